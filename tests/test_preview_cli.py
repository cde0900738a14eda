"""`drip preview` and `drip newsletter preview` take the same options from one
place (drip/preview_cli.py) and write their output the same way."""

from __future__ import annotations

from email import message_from_bytes, policy

import click

from drip.cli import main
from drip.lazy import LazyCommand

SHARED = ("symptoms", "fmt", "output")


def _options(command: click.Command) -> dict[str, dict[str, object]]:
    if isinstance(command, LazyCommand):
        command = command.load()
    return {
        p.name: {
            "opts": p.opts,
            "help": getattr(p, "help", None),
            "default": p.default,
            "type": repr(p.type),
        }
        for p in command.params
        if isinstance(p, click.Option) and p.name in SHARED
    }


def test_both_preview_commands_take_the_same_shared_options():
    newsletter = main.commands["newsletter"]
    if isinstance(newsletter, LazyCommand):
        newsletter = newsletter.load()
    assert isinstance(newsletter, click.Group)
    drip_preview = _options(main.commands["preview"])
    news_preview = _options(newsletter.commands["preview"])
    assert set(drip_preview) == set(SHARED)
    assert drip_preview == news_preview
    assert drip_preview["fmt"]["opts"] == ["--format"]
    assert drip_preview["output"]["opts"] == ["--output", "-o"]


def test_both_write_the_whole_message_to_a_file_as_sent(shipped, tmp_path):
    """--format eml -o FILE keeps the message's CRLF line ends, for either command."""
    for args in (
        ("preview", "vein-health", "causes", "--symptoms", "night_cramps"),
        ("newsletter", "preview", "2026-12-travel", "--symptoms", "night_cramps"),
    ):
        target = tmp_path / f"{args[0]}.eml"
        result = shipped.cli(*args, "--format", "eml", "-o", str(target))
        assert result.exit_code == 0, result.output
        assert result.output == f"wrote {target}\n"
        data = target.read_bytes()
        assert b"\r\n" in data and data.count(b"\n") == data.count(b"\r\n")
        msg = message_from_bytes(data, policy=policy.default)
        assert msg["Subject"] and msg.get_body(preferencelist=("html",)) is not None


def test_newsletter_preview_says_when_those_symptoms_are_outside_its_audience(project):
    from newsletter_helpers import add_newsletter

    add_newsletter(project, audience='{ any = ["heavy_legs"] }')
    outside = project.cli("newsletter", "preview", "2026-06-news", "--symptoms", "night_cramps")
    assert outside.exit_code == 0, outside.output
    assert (
        "note: a patient with these symptoms never gets this newsletter (any of heavy_legs); "
        "shown anyway"
    ) in outside.output
    assert "<html" in outside.output  # shown anyway
    inside = project.cli("newsletter", "preview", "2026-06-news", "--symptoms", "heavy_legs")
    assert inside.exit_code == 0 and "never gets" not in inside.output
