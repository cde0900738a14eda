"""`drip check` reaches every branch a patient can reach, and says each problem once.

Issue 7 item 4: a typo in a branch that needs two answers and not a third passed the
check (it rendered no answers, each alone, and all) and then crashed every send.
Issue 11: broken templates and subjects gave tracebacks instead of one line.
"""

from __future__ import annotations

import itertools
import re

import pytest
import textstat
from jinja2 import Environment

from drip.branches import Reads, complete, pairwise, plan_profiles, read_flags
from drip.checks import check_config
from drip.config import load_config
from drip.quality import dale_chall_grade, reading_level
from drip.render import Renderer, TemplateProblem, subscriber_context
from drip.rules import Rule

SECTION = """<mj-section>
  <mj-column>
    <mj-text>
      <p>A cramp is a muscle that tightens on its own.</p>
{body}
    </mj-text>
  </mj-column>
</mj-section>
"""
LINKS = {"unsubscribe_url": "https://clinic.test/u/T", "preferences_url": "https://clinic.test/p/T"}
# line 5 of the template holds {body}'s first line
BODY_LINE = 5

NEEDS_TWO_NOT_A_THIRD = (
    "      {% if symptoms.night_cramps and symptoms.walking_cramps and not symptoms.heavy_legs %}"
    "<p>{{ BUG }}</p>{% endif %}"
)


def write(project, name: str, text: str | bytes) -> None:
    path = project.templates / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


def failed(project, *args: str) -> str:
    """Run `drip check` (in-process: a traceback would fail the test), expect exit 1."""
    result = project.cli("check", *args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def problem_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith("  /")]


# -- item 4: every branch -------------------------------------------------------------


@pytest.mark.parametrize(
    "bug,message",
    [
        ("clinic.nmae", "undefined: 'dict object' has no attribute 'nmae'; did you mean 'name'?"),
        ("clinic.name | nofilter", "No filter named 'nofilter' found."),
        ("clinic.name | round", "TypeError"),  # a filter called on the wrong kind of value
    ],
)
def test_a_typo_in_a_branch_needing_two_answers_and_not_a_third_is_caught(project, bug, message):
    write(project, "causes.mjml", SECTION.format(body=NEEDS_TWO_NOT_A_THIRD.replace("BUG", bug)))
    config = load_config(project.config)
    renderer = Renderer(config.templates_dir)
    campaign = config.campaign("leg-health")
    step = campaign.step("causes")
    # the old check's answer sets (none, each alone, all) never reach the branch ...
    old = [set(), *({k} for k in [*config.symptoms, *config.red_flags])]
    old.append(set(config.symptoms) | set(config.red_flags))
    for answers in old:
        context = subscriber_context(
            config, first_name="Alex", symptoms=answers, links=LINKS, campaign=campaign, step=step
        )
        renderer.render(step, context)
    # ... and a patient with night and walking cramps, not heavy legs, does
    out = failed(project)
    lines = problem_lines(out)
    # two steps use causes.mjml and many answer sets hit it: one problem, one line
    assert "drip: 1 problem in the templates" in out
    assert len(lines) == 1, out
    assert lines[0].startswith(f"{project.templates}/causes.mjml:{BODY_LINE}: {message}")
    assert "--symptoms night_cramps,walking_cramps" in lines[0]
    # the line says how to see it: that preview fails at the same place
    preview = project.cli(
        "preview", "leg-health", "causes", "--symptoms", "night_cramps,walking_cramps"
    )
    assert preview.exit_code == 1
    assert f"causes.mjml:{BODY_LINE}:" in preview.output
    # and `drip send` refuses before sending anything
    send = project.cli("send", "--now", "2026-06-01T15:00:00Z")
    assert send.exit_code == 1 and f"causes.mjml:{BODY_LINE}:" in send.output


def test_a_render_error_is_a_template_problem_with_its_line(project):
    """What `drip send` gets for the one patient who reaches a broken branch: a
    TemplateProblem naming file and line (the sender fails that message only)."""
    write(project, "causes.mjml", SECTION.format(body=NEEDS_TWO_NOT_A_THIRD.replace("BUG", "x.y")))
    # an unknown top-level name is refused by `drip check` before rendering; here we
    # render directly, as the sender would with a template changed after the check
    config = load_config(project.config)
    campaign = config.campaign("leg-health")
    step = campaign.step("causes")
    context = subscriber_context(
        config,
        first_name=None,
        symptoms={"night_cramps", "walking_cramps"},
        links=LINKS,
        campaign=campaign,
        step=step,
    )
    with pytest.raises(TemplateProblem) as caught:
        Renderer(config.templates_dir).render(step, context)
    assert str(caught.value).startswith(f"{project.templates}/causes.mjml:{BODY_LINE}: undefined")


def test_an_error_no_patient_of_the_step_can_reach_is_not_an_error(project):
    """The `walking` step goes only to patients with walking cramps (its `when`)."""
    project.edit_config(
        'key = "walking"\n  subject = "A note about walking"\n  preheader = "Why this one '
        'needs a doctor"\n  template = "causes"',
        'key = "walking"\n  subject = "A note about walking"\n  preheader = "Why this one '
        'needs a doctor"\n  template = "walking"',
    )
    body = "      {% if not symptoms.walking_cramps %}<p>{{ clinic.nmae }}</p>{% endif %}"
    write(project, "walking.mjml", SECTION.format(body=body))
    result = project.cli("check")
    assert result.exit_code == 0, result.output
    assert (
        "leg-health/walking" in result.output
        and "reads 1 answer: all 2 combinations; 1 of them no patient of this step can have"
        in result.output
    )
    # the same line where the step's rule allows it is an error
    project.edit_config('when = { any = ["walking_cramps"] }', "")
    assert f"walking.mjml:{BODY_LINE}: undefined" in failed(project)


MANY = [f"s{i:02d}" for i in range(12)]


def many_symptoms(project) -> None:
    project.edit_config(
        'heavy_legs = "Heavy or tired legs"',
        'heavy_legs = "Heavy or tired legs"\n' + "\n".join(f'{k} = "Answer {k}"' for k in MANY),
    )


def test_many_answers_get_a_covering_set_that_reaches_a_deep_branch(project):
    """12 answers read: 4,096 combinations is over the cap, so a covering set is
    rendered, and it still reaches a branch needing three answers and not a fourth
    (pairwise rows alone would not be sure to)."""
    many_symptoms(project)
    blocks = "\n".join(
        f"      {{% if symptoms.{k} %}}<p>Text for {k}.</p>{{% endif %}}" for k in MANY
    )
    deep = (
        "      {% if symptoms.s01 and symptoms.s05 %}{% if symptoms.s09 and not symptoms.s02 %}"
        "<p>{{ clinic.nmae }}</p>{% endif %}{% endif %}"
    )
    write(project, "causes.mjml", SECTION.format(body=blocks + "\n" + deep))
    out = failed(project)
    assert f"causes.mjml:{BODY_LINE + len(MANY)}: undefined" in out
    assert len(problem_lines(out)) == 1
    # without the bug the check passes and says what it did
    write(project, "causes.mjml", SECTION.format(body=blocks))
    result = project.cli("check")
    assert result.exit_code == 0, result.output
    said = re.search(
        r"reads 12 answers: 4,096 combinations > cap 256, so a covering set of (\d+)", result.output
    )
    assert said, result.output
    assert int(said.group(1)) < 256


def test_the_covering_set_reaches_every_branch_of_a_random_template():
    """Property: for templates with nested tests on many answers, every branch a
    patient can reach is reached by some answer set in the plan."""
    import random

    rng = random.Random(7)
    keys = [f"k{i}" for i in range(14)]
    flags = {"symptoms": {k: frozenset({k}) for k in keys}}
    env = Environment()
    for _ in range(30):
        body, markers = [], []
        for n in range(8):
            picked = rng.sample(keys, rng.randint(1, 4))
            test = " and ".join(
                f"{'not ' if rng.random() < 0.3 else ''}symptoms.{k}" for k in picked
            )
            body.append(f"{{% if {test} %}}[{n}]{{% endif %}}")
            markers.append(f"[{n}]")
        source = "".join(body)
        plan = plan_profiles(read_flags([env.parse(source)], flags), keys, [Rule()], cap=256)
        template = env.from_string(source)
        reached = {
            m
            for profile in plan.profiles
            for m in markers
            if m in template.render(symptoms={k: k in profile for k in keys})
        }
        for n, piece in enumerate(body):  # reached exactly when some answers satisfy it
            single = env.from_string(piece)
            tested = sorted(set(re.findall(r"symptoms\.(k\d+)", piece)))
            can = any(
                single.render(symptoms={k: k in set(on) for k in keys})
                for size in range(len(tested) + 1)
                for on in itertools.combinations(tested, size)
            )
            assert (f"[{n}]" in reached) == can, (piece, plan.describe())


def test_pairwise_rows_cover_every_pair_of_answers_both_ways():
    for n in (2, 3, 7, 19):
        keys = [f"k{i}" for i in range(n)]
        rows = pairwise(keys)
        for a, b in itertools.combinations(keys, 2):
            for want_a, want_b in itertools.product((False, True), repeat=2):
                assert any((a in r) == want_a and (b in r) == want_b for r in rows)
        assert len(rows) <= 4 * n


def test_answer_sets_are_completed_to_match_the_rules_or_skipped():
    universe = frozenset({"a", "b", "c", "d"})
    fixed = frozenset({"a", "b"})
    # the step needs any of c, d: the free answer c is ticked to make a real patient
    assert complete(frozenset({"a"}), fixed, universe, [Rule(any=frozenset({"c", "d"}))]) == {
        "a",
        "c",
    }
    # a step for patients without a: an answer set with a cannot happen
    assert complete(frozenset({"a"}), fixed, universe, [Rule(none=frozenset({"a"}))]) is None
    plan = plan_profiles(
        Reads(frozenset({"a", "b"}), ()), universe, [Rule(all=frozenset({"a"}))], cap=256
    )
    assert plan.exhaustive and plan.considered == 4 and plan.skipped == 2
    assert all("a" in p for p in plan.profiles)


def test_reads_through_set_for_and_other_boolean_dicts():
    env = Environment()
    flags = {
        "symptoms": {k: frozenset({k}) for k in "abcd"},
        "caution": {"massage": frozenset({"c"})},  # a derived flag: depends on answer c
    }
    tree = env.parse(
        "{% set pain = symptoms.a or symptoms['b'] %}{% if pain and caution.massage %}x{% endif %}"
    )
    reads = read_flags([tree], flags)
    assert reads.keys == {"a", "b", "c"}
    assert frozenset({"a", "b", "c"}) in reads.branches
    # a loop over the whole dict may read any answer
    loop = env.parse(
        "{% for key, on in symptoms.items() %}{% if on %}{{ key }}{% endif %}{% endfor %}"
    )
    assert read_flags([loop], flags).keys == {"a", "b", "c", "d"}


# -- issue 11: template crashes are one line with file:line, exit 1 --------------------


def line_of(project, needle: str) -> int:
    for number, text in enumerate(project.config.read_text().splitlines(), start=1):
        if needle in text:
            return number
    raise AssertionError(needle)


@pytest.mark.parametrize(
    "subject,message",
    [
        ("Why {{ clinic.name", "unexpected end of template"),
        ("Why {{ clinic.name | nofilter }}", "No filter named 'nofilter'"),
        ("Why {{ clinic.nmae }}", "undefined: 'dict object' has no attribute 'nmae'"),
    ],
)
def test_a_broken_subject_names_campaigns_toml_line_and_field(project, subject, message):
    old = 'subject = "Why muscles tighten at night"'
    project.edit_config(old, f'subject = "{subject}"')
    line = line_of(project, subject)
    out = failed(project)
    assert f"{project.config}:{line}: campaign[0].step[1].subject: {message}" in out
    assert len(problem_lines(out)) == 1


def test_a_condition_word_in_a_subject_is_one_line_at_the_subject(project):
    project.edit_config(
        'subject = "Why muscles tighten at night"', 'subject = "Why cramps come at night"'
    )
    line = line_of(project, "Why cramps come at night")
    lines = problem_lines(failed(project))
    assert lines == [
        f"{project.config}:{line}: campaign[0].step[1].subject: 'Why cramps come at night' "
        "names a condition (cramps); subjects show on lock screens: keep health words out"
    ]


def test_a_broken_preheader_too(project):
    project.edit_config('preheader = "The common reasons"', 'preheader = "The {% if %}"')
    line = line_of(project, "The {% if %}")
    out = failed(project)
    assert f"{project.config}:{line}: campaign[0].step[1].preheader: " in out


def test_an_unknown_filter_outside_a_branch_names_its_line(project):
    write(project, "causes.mjml", SECTION.format(body="      <p>{{ clinic.name | shout }}</p>"))
    out = failed(project)
    assert f"{project.templates}/causes.mjml:{BODY_LINE}: No filter named 'shout'" in out


def test_a_template_that_is_not_utf8_names_its_line(project):
    text = SECTION.format(body="      <p>Caf\u00e9</p>").encode("latin-1")
    write(project, "causes.mjml", text)
    out = failed(project)
    assert f"{project.templates}/causes.mjml:{BODY_LINE}: is not UTF-8 text (byte 0xe9)" in out


def test_a_template_or_the_layout_that_is_a_folder(project):
    (project.templates / "causes.mjml").unlink()
    (project.templates / "causes.mjml").mkdir()
    out = failed(project)
    assert "campaign[0].step[1].template: " in out and "causes.mjml is a folder" in out
    (project.templates / "causes.mjml").rmdir()
    write(project, "causes.mjml", SECTION.format(body=""))
    (project.templates / "_layout.mjml").unlink()
    (project.templates / "_layout.mjml").mkdir()
    out = failed(project)
    assert f"{project.templates}/_layout.mjml: is a folder, not a template file" in out


def test_no_traceback_from_a_real_drip_process(project):
    """The same, end to end, in a separate `drip` process: stderr is one line per
    problem and a summary, nothing else."""
    project.edit_config('subject = "Why muscles tighten at night"', 'subject = "Why {{ x"')
    write(
        project,
        "home_relief.mjml",
        SECTION.format(body=NEEDS_TWO_NOT_A_THIRD.replace("BUG", "clinic.nmae")),
    )
    done = project.run("check", "-q")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert (
        lines[0] == "drip: 2 problems in the templates (nothing will be sent until they are fixed):"
    )
    assert len(lines) == 3
    assert re.match(
        rf"  {re.escape(str(project.config))}:\d+: campaign\[0\]\.step\[1\]\.subject: ", lines[1]
    )
    assert lines[2].startswith(f"  {project.templates}/home_relief.mjml:{BODY_LINE}: undefined")


# -- item 7: two reading formulas, the gate on one --------------------------------------


def test_check_shows_both_formulas_and_gates_on_flesch_kincaid(project):
    result = project.cli("check")
    assert result.exit_code == 0, result.output
    shown = re.findall(
        r"grade\s+([\d.]+),\s+\d+ words \(Flesch-Kincaid; Dale-Chall ([\d.]+) = grade ",
        result.output,
    )
    assert len(shown) == 5  # every step of the fixture
    project.edit_config("[[campaign]]", "[quality]\nmax_grade = 1\n\n[[campaign]]")
    out = failed(project)
    over = [line for line in problem_lines(out) if "Flesch-Kincaid grade" in line]
    # one line per template, not one per answer set or per step
    assert len(over) == len({line.split(":", 1)[0] for line in over}) == 4  # templates


def test_reading_level_is_textstat_and_the_band_table():
    prose = "You can stop a cramp. Stand up and walk. Drink water in the day."
    level = reading_level(prose)
    assert level.flesch_kincaid == round(textstat.flesch_kincaid_grade(prose), 1)
    assert level.dale_chall == round(textstat.dale_chall_readability_score(prose), 1)
    assert [dale_chall_grade(s) for s in (4.9, 5.0, 6.5, 7.9, 8.0, 9.5, 10.0)] == [
        "grade 4 and below",
        "grade 5-6",
        "grade 7-8",
        "grade 9-10",
        "grade 11-12",
        "grade 13-15",
        "grade 16 and above",
    ]


def test_the_shipped_series_is_checked_completely(shipped):
    config = load_config(shipped.config)
    report = check_config(config, readability=False)
    assert report.ok, report.problems
    # every step says how its answer sets were chosen
    emails = sum(len(c.steps) for c in config.campaigns) + len(config.newsletters)
    assert len(report.coverage) == emails
    assert report.profiles > 294  # the old check's count: it now reaches more
    assert report.distinct <= report.profiles
