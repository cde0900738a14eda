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
