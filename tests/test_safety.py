"""The safety model: advice that is unsafe for some answers never reaches them bare.

campaigns.toml's [caution] table names, for each kind of advice (rubbing a cramp,
heat, raising the legs, stockings), the symptoms and warning signs that make it
unsafe until a doctor has checked. Every email of the shipped series is rendered
for each of those answers, alone and with the answers that bring in more tips
(swelling, heavy legs, pregnancy), and the unsafe advice must be absent, or come
after its caution, in both the HTML and the text part.
"""

from __future__ import annotations

import html
import itertools
import re
from pathlib import Path

import pytest

from drip.checks import preview_links
from drip.config import Config, ConfigError, load_config
from drip.render import RenderedEmail, Renderer, subscriber_context

REPO = Path(__file__).parent.parent

# How the shipped templates word each kind of advice. Each phrase must appear for a
# patient with no warning signs (checked below), so a rewording cannot make the
# absence checks pass by accident.
WITHHELD = {
    "massage": ("Rub it.", "Knead the tight muscle"),
    "heat": ("Add warmth.", "heating pad on low"),
    "raise_legs": (
        "rest your legs on pillows, higher than your heart",
        "Put your feet up.",
        "put your leg up when you can",
    ),
}
# Stocking advice may stay, but only after the caution, which every such patient gets.
COMPRESSION_CAUTION = "Do not wear stockings of any strength yet"
COMPRESSION_ADVICE = (
    "Sold in stores",
    "them on first thing in the morning",
    "Put them on in the morning",
)
STORE_CAVEAT = "Sold in stores, but not for you until you are checked"
# The answers that bring in more tailored tips, to combine with each risky answer.
COMPANIONS = ((), ("swelling",), ("heavy_legs", "standing_job"), ("pregnancy", "night_cramps"))


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(REPO / "campaigns.toml")


@pytest.fixture(scope="module")
def renderer(config: Config) -> Renderer:
    return Renderer(config.templates_dir)


def render(config: Config, renderer: Renderer, campaign: str, step: str, answers) -> RenderedEmail:
    camp = config.campaign(campaign)
    stp = camp.step(step)
    context = subscriber_context(
        config,
        first_name="Alex",
        symptoms=set(answers),
        links=preview_links(config),
        campaign=camp,
        step=stp,
    )
    return renderer.render(stp, context)


def every_step(config: Config):
    for campaign in config.campaigns:
        for step in campaign.steps:
            yield campaign.key, step.key


def risky_profiles(config: Config) -> list[tuple[str, ...]]:
    """Each answer any caution lists, alone and with each companion; and all of them."""
    risky = sorted(set().union(*(c.unsafe_with for c in config.cautions.values())))
    found = [tuple(sorted({key, *extra})) for key in risky for extra in COMPANIONS]
    found.append((*risky, "swelling", "heavy_legs", "pregnancy"))
    return found


def parts(email: RenderedEmail) -> dict[str, str]:
    """What the patient reads in the HTML (body text, no hidden preheader) and the text."""
    body = email.html[email.html.index("<body") :]
    body = re.sub(r'<div style="display:none;.*?</div>', " ", body, count=1, flags=re.S)
    body = html.unescape(re.sub(r"<!--.*?-->|<[^>]+>", " ", body, flags=re.S))
    seen = re.sub(r" ([.,:])", r"\1", re.sub(r"\s+", " ", body))
    return {"html": seen, "text": re.sub(r"\s+", " ", email.text)}


# -- the model itself -----------------------------------------------------------------


def test_the_model_covers_the_clinical_review(config: Config):
    """The issue's list: a possible clot, arterial signs, ulcers and infection."""
    unsafe = {kind: c.unsafe_with for kind, c in config.cautions.items()}
    clot = {"clot_signs", "chest_breathing"}
    assert clot <= unsafe["massage"] and clot <= unsafe["heat"] and clot <= unsafe["raise_legs"]
    arterial = {"walking_cramps", "cold_foot"}
    assert arterial <= unsafe["heat"] and arterial <= unsafe["raise_legs"]
    assert (
        arterial | {"slow_sore", "open_sore", "spreading_redness"} | clot <= unsafe["compression"]
    )
    for caution in config.cautions.values():
        assert caution.advice and len(caution.why.split()) >= 15, caution.kind


def test_templates_see_the_model_as_unsafe_kind(config: Config):
    context = subscriber_context(config, first_name=None, symptoms={"walking_cramps"}, links={})
    assert context["unsafe"] == {
        "massage": False,
        "heat": True,
        "raise_legs": True,
        "compression": True,
    }
    nothing = subscriber_context(config, first_name=None, symptoms=set(), links={})
    assert not any(nothing["unsafe"].values())


def test_the_advice_phrases_reach_patients_without_warning_signs(config, renderer):
    home = parts(render(config, renderer, "vein-health", "home-relief", ("swelling",)))
    sore = parts(render(config, renderer, "urgent-care", "advice", ("open_sore",)))
    compression = parts(render(config, renderer, "vein-health", "compression", ("swelling",)))
    for part in ("html", "text"):
        for phrases in WITHHELD.values():
            for phrase in phrases:
                assert phrase in home[part] + sore[part], (part, phrase)
        for phrase in COMPRESSION_ADVICE:
            assert phrase in compression[part], (part, phrase)
        assert COMPRESSION_CAUTION not in compression[part]


# -- every email, every risky profile ---------------------------------------------------


def test_unsafe_advice_is_absent_or_comes_after_its_caution(config: Config, renderer: Renderer):
    problems = []
    checked = 0
    for answers in risky_profiles(config):
        unsafe = config.unsafe(set(answers))
        for campaign, step in every_step(config):
            email = render(config, renderer, campaign, step, answers)
            for part, text in parts(email).items():
                checked += 1
                where = f"{campaign}/{step} {part} for {answers}"
                for kind, phrases in WITHHELD.items():
                    if unsafe[kind]:
                        problems += [f"{where}: {kind}: {p!r}" for p in phrases if p in text]
                if not unsafe["compression"]:
                    continue
                advice = [text.index(p) for p in COMPRESSION_ADVICE if p in text]
                if advice and not (
                    COMPRESSION_CAUTION in text and text.index(COMPRESSION_CAUTION) < min(advice)
                ):
                    problems.append(f"{where}: stocking advice before or without its caution")
                if text.count("Sold in stores") != text.count(STORE_CAVEAT):
                    problems.append(f"{where}: stores sell stockings, with no caveat")
    assert checked > 400
    assert problems == []


@pytest.mark.parametrize(
    "answers",
    [
        ("walking_cramps",),
        ("cold_foot",),
        ("slow_sore",),
        ("open_sore",),
        ("spreading_redness",),
        ("clot_signs", "swelling"),
        ("chest_breathing",),
    ],
)
def test_every_stocking_risk_gets_the_caution_first_in_the_compression_email(
    config, renderer, answers
):
    for part, text in parts(
        render(config, renderer, "vein-health", "compression", answers)
    ).items():
        assert COMPRESSION_CAUTION in text, (part, answers)
        assert text.index(COMPRESSION_CAUTION) < text.index("How they work"), part
        assert "ankle-brachial index" in text


def test_a_clot_patient_gets_no_rubbing_heat_raising_or_morning_stockings(config, renderer):
    """The exact sentences the clinical review found on day 7 and day 11."""
    answers = ("clot_signs", "swelling", "night_cramps")
    home = render(config, renderer, "vein-health", "home-relief", answers)
    compression = render(config, renderer, "vein-health", "compression", answers)
    for text in parts(home).values():
        assert "Knead the tight muscle" not in text and "heating pad" not in text
        assert "higher than your heart" not in text
        assert "Do not rub, warm or raise the leg" in text
        assert text.index("not safe for you yet") < text.index("When a cramp starts")
    for text in parts(compression).values():
        assert "Once a doctor says they are safe for you, put them on first thing" in text


# -- clot or cramp, pregnancy, narrowed arteries -------------------------------------------


@pytest.mark.parametrize("step", ["causes", "home-relief"])
@pytest.mark.parametrize("answers", [(), ("night_cramps",), ("walking_cramps", "over_50")])
def test_everyone_reading_about_cramps_learns_how_a_clot_differs(config, renderer, step, answers):
    for part, text in parts(render(config, renderer, "vein-health", step, answers)).items():
        assert "A cramp or a clot?" in text, (part, step)
        section = text[text.index("A cramp or a clot?") :][:600]
        for fact in ("one calf", "does not ease", "swollen" if step == "causes" else "swelling"):
            assert fact in section, (part, step, fact)
        assert "today" in section and "do not rub it" in section.lower()


@pytest.mark.parametrize("step", ["causes", "home-relief"])
def test_pregnancy_and_a_new_baby_are_told_clots_are_more_likely(config, renderer, step):
    pregnant = parts(render(config, renderer, "vein-health", step, ("pregnancy",)))
    other = parts(render(config, renderer, "vein-health", step, ("night_cramps",)))
    for part in ("html", "text"):
        assert (
            "in the last 6 weeks" in pregnant[part] and "blood clot more likely" in pregnant[part]
        )
        assert "blood clot more likely" not in other[part]


def test_walking_pain_is_a_heart_and_stroke_risk_with_heat_and_raising_caveats(config, renderer):
    walker = ("walking_cramps",)
    causes = parts(render(config, renderer, "vein-health", "causes", walker))
    early = parts(render(config, renderer, "vein-health", "see-doctor-early", walker))
    home = parts(render(config, renderer, "vein-health", "home-relief", walker))
    for part in ("html", "text"):
        assert "heart attack or a stroke" in causes[part]
        assert "heart attack or a stroke" in early[part]
        assert "skip heat on your legs and feet" in home[part]
        assert "Do not raise your legs high" in home[part]
    sleeper = parts(render(config, renderer, "vein-health", "causes", ("night_cramps",)))
    assert "heart attack" not in sleeper["text"]


def test_the_urgent_email_says_what_not_to_do_while_waiting(config, renderer):
    clot = parts(render(config, renderer, "urgent-care", "advice", ("clot_signs",)))
    foot = parts(render(config, renderer, "urgent-care", "advice", ("cold_foot",)))
    for part in ("html", "text"):
        assert "do not rub the leg" in clot[part]
        assert "Do not warm it or raise it" in foot[part]


def test_no_profile_of_two_risky_answers_breaks_a_template(config, renderer):
    risky = sorted(set().union(*(c.unsafe_with for c in config.cautions.values())))
    for pair in itertools.combinations(risky, 2):
        for campaign, step in every_step(config):
            render(config, renderer, campaign, step, pair)


# -- validation ------------------------------------------------------------------------

CAUTION = """
[caution.massage]
advice = "Rubbing the calf"
unsafe_with = ["clot_sign", "night_cramps"]
why = "A clot must be checked first."
"""


def _problems(project, extra: str) -> list[str]:
    text = project.config.read_text()
    project.config.write_text(text.replace("[[campaign]]", extra + "\n[[campaign]]", 1))
    with pytest.raises(ConfigError) as err:
        load_config(project.config)
    return [str(p) for p in err.value.problems]


def _line(project, needle: str) -> int:
    lines = project.config.read_text().splitlines()
    return next(n for n, line in enumerate(lines, start=1) if needle in line)


def test_an_unknown_key_in_the_model_is_reported_with_file_and_line(project):
    (problem,) = _problems(project, CAUTION)
    line = _line(project, 'unsafe_with = ["clot_sign"')
    assert problem == (
        f"{project.config}:{line}: caution.massage.unsafe_with[0]: "
        "unknown symptom 'clot_sign'; did you mean 'clot_signs'?"
    )


def test_a_caution_without_its_keys_or_with_a_typo_in_a_field(project):
    broken = CAUTION.replace('unsafe_with = ["clot_sign", "night_cramps"]', "").replace(
        "why =", "wyh ="
    )
    pad = '\n[caution.heat-pad]\nadvice = "x"\nwhy = "y"\nunsafe_with = []\n'
    found = _problems(project, broken + pad)
    text = "\n".join(found)
    assert "caution.massage.wyh: unknown field 'wyh'; did you mean 'why'?" in text
    assert "caution.massage.unsafe_with: is required" in text
    assert "caution.massage.why: is required" in text
    assert "caution.heat-pad: kinds are lower-case letters, digits and _" in text
    assert "caution.heat-pad.unsafe_with: must name at least one" in text
    assert all(re.match(rf"{re.escape(str(project.config))}:\d+: ", p) for p in found), found


def test_a_template_reading_an_unknown_kind_fails_drip_check(project):
    model = CAUTION.replace('"clot_sign"', '"clot_signs"')
    text = project.config.read_text()
    project.config.write_text(text.replace("[[campaign]]", model + "\n[[campaign]]", 1))
    welcome = project.templates / "welcome.mjml"
    typo = "{% if unsafe.masage %}<mj-section><mj-column><mj-text>x</mj-text></mj-column>"
    welcome.write_text(typo + "</mj-section>{% endif %}\n" + welcome.read_text())
    result = project.cli("check")
    assert result.exit_code == 1
    assert "masage" in result.output
