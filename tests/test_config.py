"""campaigns.toml validation: every problem at once, with file, line and field path."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from drip.config import ConfigError, load_config
from drip.durations import format_duration, parse_duration


def problems(project, old: str, new: str) -> list[str]:
    project.edit_config(old, new)
    with pytest.raises(ConfigError) as err:
        load_config(project.config)
    return [str(p) for p in err.value.problems]


def line_of(project, needle: str) -> int:
    for number, line in enumerate(project.config.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


def test_the_fixture_config_loads(project):
    config = load_config(project.config)
    assert [c.key for c in config.campaigns] == ["leg-health", "urgent-care"]
    steps = config.campaign("leg-health").steps
    assert [s.delay for s in steps] == [
        timedelta(0),
        timedelta(days=2),
        timedelta(days=1),
        timedelta(days=4),
    ]
    assert steps[2].when is not None and steps[2].when.matches({"walking_cramps"})
    assert config.clinic.send_window.weekdays == frozenset(range(5))


def test_a_typo_in_a_field_name_says_where_and_suggests(project):
    typo, missing = problems(project, 'delay = "2d"', 'dealy = "2d"')
    line = line_of(project, 'dealy = "2d"')
    assert typo == (
        f"{project.config}:{line}: campaign[0].step[1].dealy: "
        "unknown field 'dealy'; did you mean 'delay'?"
    )
    assert "campaign[0].step[1].delay: is required" in missing


def test_all_errors_are_reported_at_once(project):
    project.edit_config('delay = "2d"', 'delay = "2 days"')
    project.edit_config('any = ["walking_cramps"]', 'any = ["walking_cramp"]')
    project.edit_config('template = "home_relief"', 'template = "home_relief_v2"')
    project.edit_config("start = 9", 'start = "nine"')
    with pytest.raises(ConfigError) as err:
        load_config(project.config)
    found = {p.path: p for p in err.value.problems}
    assert set(found) == {
        "campaign[0].step[1].delay",
        "campaign[0].step[2].when.any[0]",
        "campaign[0].step[3].template",
        "clinic.send_window.start",
    }
    assert "did you mean 'walking_cramps'?" in found["campaign[0].step[2].when.any[0]"].message
    assert "did you mean 'home_relief'?" in found["campaign[0].step[3].template"].message
    assert '"3d"' in found["campaign[0].step[1].delay"].message
    assert found["campaign[0].step[1].delay"].line == line_of(project, 'delay = "2 days"')
    assert "4 problems" in str(err.value)


def test_wrong_types_are_named(project):
    (problem,) = problems(project, 'subject = "Simple things to try at home"', "subject = 42")
    assert "campaign[0].step[3].subject: must be a string, not a number" in problem


def test_unknown_symptom_in_an_audience(project):
    (problem,) = problems(project, '"heavy_legs"] }', '"heavy_leg"] }')
    assert (
        "campaign[0].audience.any[2]: unknown symptom 'heavy_leg'; did you mean "
        "'heavy_legs'?" in problem
    )


def test_missing_required_clinic_fields(project):
    found = problems(project, 'postal_address = """', 'postal_addres = """')
    assert any("clinic.postal_address: is required" in p for p in found)
    assert any("did you mean 'postal_address'?" in p for p in found)


def test_invalid_toml_names_the_line(project):
    project.config.write_text(project.config.read_text() + "\n[[campaign]\nkey = 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(project.config)
    (problem,) = err.value.problems
    assert problem.line is not None and "is not valid TOML" in problem.message


def test_missing_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_duplicate_step_keys_and_bad_timezone(project):
    found = problems(project, 'key = "causes"', 'key = "welcome"')
    assert any("step key 'welcome' is used twice" in p for p in found)
    found = problems(project, 'timezone = "America/Chicago"', 'timezone = "Mars/Olympus"')
    assert any("unknown time zone 'Mars/Olympus'" in p for p in found)


def test_drip_check_exits_non_zero_and_send_refuses(project, sink):
    project.edit_config('delay = "4d"', 'delay = "soon"')
    result = project.cli("check")
    assert result.exit_code == 1
    assert "campaign[0].step[3].delay" in result.output
    result = project.cli("subscribers", "add", "a@example.org", "--confirmed")
    assert result.exit_code == 1  # nothing works from a broken file
    result = project.cli("send", "--now", "2026-06-01T15:00:00Z")
    assert result.exit_code == 1 and sink.received == []


@pytest.mark.parametrize(
    "text,expected",
    [
        ("0d", timedelta(0)),
        ("3d", timedelta(days=3)),
        ("12h", timedelta(hours=12)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("90min", timedelta(minutes=90)),
        ("1h 30min", timedelta(hours=1, minutes=30)),
        ("2w", timedelta(weeks=2)),
        ("P3D", timedelta(days=3)),
        ("PT12H", timedelta(hours=12)),
        ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)),
    ],
)
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3", "d", "3 days", "P", "PT", "-1d", "3x"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration_round_trips():
    for text in ("0d", "3d", "1d12h", "2h30min"):
        assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    "text,advice",
    [
        ("1m", 'could mean minutes or months; did you mean "1min" (minutes) or "30d" (days)?'),
        ("3M", 'did you mean "3min" (minutes) or "90d" (days)?'),
        ("1w2m", 'did you mean "1w2min" (minutes) or "1w60d" (days)?'),
        ("2h30m", 'write minutes as "min", like "2h30min"'),
    ],
)
def test_a_bare_m_is_refused_with_a_did_you_mean(text, advice):
    """A marketer writing "1m" likely means a month; drip used to read a minute."""
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    assert advice in str(caught.value)


def test_a_bare_m_in_campaigns_toml_is_one_line_with_file_and_line(project):
    project.edit_config('delay = "2d"', 'delay = "1m"')
    result = project.cli("check")
    assert result.exit_code == 1
    (line,) = [ln for ln in result.output.splitlines() if "1min" in ln]
    assert re.search(r"campaigns\.toml:\d+: campaign\[0\]\.step\[1\]\.delay: '1m' could", line)


# each case: (text in the fixture, what replaces it, the problem drip must name)
BAD = [
    ("[clinic.send_window]", "[clinic.send_window]\n", ""),  # baseline: still valid
    ('name = "Test Vein Clinic"', 'name = "  "', "clinic.name: must not be empty"),
    ('name = "Test Vein Clinic"', "name = 3", "clinic.name: must be a string, not a number"),
    ('name = "Test Vein Clinic"', 'name = "Test\\nClinic"', "clinic.name: must be a single line"),
    ('from = "Test Vein Clinic <care@clinic.test>"', 'from = "care"', "is not an email address"),
    ('reply_to = "frontdesk@clinic.test"', 'reply_to = "desk"', "clinic.reply_to: 'desk' is"),
    ('base_url = "https://clinic.test"', 'base_url = "clinic"', "must be an absolute URL"),
    ('timezone = "America/Chicago"', 'timezone = "Mars/Base"', "unknown time zone 'Mars/Base'"),
    ('booking_url = "https://clinic.test/book"', 'booking_url = "http://x"', "https:// URL"),
    ('min_gap = "12h"', 'min_gap = "12h"\nunsubscribe_mailto = "nope"', "must be an email addr"),
    ('min_gap = "12h"', 'min_gap = "12h"\nbounce_address = "B <b@x.org>"', "a plain address"),
    ('min_gap = "12h"', 'min_gap = "12h"\nsoft_bounce_limit = 99', "from 1 to 20, not 99"),
    ('min_gap = "12h"', "min_gap = 12", 'must be a string like "3d", not a number'),
    ('min_gap = "12h"', 'min_gap = "-1d"', "is not a delay"),
    ("start = 9", "start = 19", "start (19) must be before end (19)"),
    ("start = 9", 'start = "09:00"', ""),  # "09:00" is an hour too
    ("start = 9", "start = 25", "must be an hour from 0 to 24"),
    ('days = ["mon", "tue", "wed", "thu", "fri"]', "days = []", "must be a non-empty list"),
    ('days = ["mon", "tue", "wed", "thu", "fri"]', 'days = ["mon", "funday"]', "'funday'"),
    ("[clinic.send_window]", "send_window = 3\n[x]", "clinic.send_window: must be a table"),
    ('night_cramps = "Leg cramps at night"', 'Night = "x"', "symptoms.Night: keys are lower"),
    ('night_cramps = "Leg cramps at night"', 'night_cramps = ""', "the label patients see"),
    ('level = "urgent"', 'level = "urgnt"', "did you mean 'urgent'?"),
    ('level = "urgent"', 'level = "urgent"\n[red_flags.heavy_legs]\nlabel = "x"\nlevel = "soon"',
     "'heavy_legs' is both a symptom and a red flag"),
    ('key = "leg-health"', 'key = "Leg Health"', "campaign[0].key: keys are lower-case"),
    ('key = "urgent-care"', 'key = "leg-health"', "campaign key 'leg-health' is used twice"),
    ('key = "causes"', 'key = "welcome"', "step key 'welcome' is used twice in this campaign"),
    ('kind = "urgent"', 'kind = "asap"', 'must be "drip" or "urgent", not \'asap\''),
    ('any = ["walking_cramps"]', 'any = "walking_cramps"', "must be a list of symptom keys"),
    ('any = ["walking_cramps"]', 'sometimes = ["walking_cramps"]', "unknown field 'sometimes'"),
    ('template = "causes"', 'template = ""', "step[1].template: must not be empty"),
    ('delay = "1d"', "", "campaign[0].step[2].delay: is required"),
    ('min_gap = "12h"', 'min_gap = "12h"\n[quality]\nmax_grade = 40', "grade from 1 to 20"),
    ('min_gap = "12h"', 'min_gap = "12h"\n[quality]\nbanned_subject_words = "x"', "list of words"),
    ('min_gap = "12h"', 'min_gap = "12h"\n[quality]\nallowed_asset_hosts = [1]', "host names"),
]  # fmt: skip
CAUTIONS = [
    ('[caution.raise_legs]\nadvice = "a"\nwhy = "b"', "raise_legs.unsafe_with: is required"),
    ('[caution.raise_legs]\nadvice = "a"\nwhy = "b"\nunsafe_with = []', "must name at least one"),
    ('[caution.raise-legs]\nadvice = "a"\nwhy = "b"\nunsafe_with = ["heavy_legs"]',
     "kinds are lower-case letters, digits and _"),
    ('[caution.heat]\nadvice = "a"\nwhy = "b"\nunsafe_with = ["heavy_leg"]',
     "unknown symptom 'heavy_leg'; did you mean 'heavy_legs'?"),
]  # fmt: skip


@pytest.mark.parametrize("old,new,message", BAD, ids=[m or "valid" for *_, m in BAD])
def test_each_bad_field_is_one_problem_with_its_line(project, old, new, message):
    project.edit_config(old, new)
    if not message:
        load_config(project.config)
        return
    with pytest.raises(ConfigError) as err:
        load_config(project.config)
    found = [p for p in err.value.problems if message in str(p)]
    assert found, [str(p) for p in err.value.problems]
    assert found[0].line is not None and str(found[0]).startswith(f"{project.config}:")


@pytest.mark.parametrize("table,message", CAUTIONS)
def test_each_bad_caution_is_named(project, table, message):
    project.config.write_text(project.config.read_text() + "\n" + table + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(project.config)
    assert any(message in str(p) for p in err.value.problems), err.value.problems


@pytest.mark.parametrize(
    "content,message",
    [
        (b"\xff\xfe not text", "is not UTF-8 text"),
        (b'campaign = "x"\n[clinic]\n', "write campaigns as [[campaign]] tables"),
        (b"[clinic]\n[symptoms]\n", "the [symptoms] table must list at least one symptom"),
        (b"[symptoms]\na = 'A'\n[[campaign]]\nkey = 'c'\nname = 'C'\n", "needs at least one"),
        (b"clinic = 3\n", "clinic: must be a table, not a number"),
    ],
)
def test_broken_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "campaigns.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)
