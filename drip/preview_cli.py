"""What `drip preview` and `drip newsletter preview` share: the made-up patient's
symptoms, the format to show, and where the email goes (a file or standard output)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from .rules import Rule

if TYPE_CHECKING:  # the CLI imports this module; Jinja and MJML only when previewing
    from .outgoing import Outgoing

F = TypeVar("F", bound=Callable[..., object])

_OPTIONS = (
    click.option("--symptoms", default="", help="Comma-separated symptom keys."),
    click.option("--format", "fmt", type=click.Choice(["html", "text", "eml"]), default="html"),
    click.option(
        "--output",
        "-o",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write to a file instead of standard output.",
    ),
)


def preview_options(command: F) -> F:
    """--symptoms, --format and --output (the command receives symptoms, fmt, output)."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def show_preview(made: Outgoing, fmt: str, output: Path | None) -> None:
    """The HTML, the text with its subject, or the whole message (eml), as asked."""
    if fmt == "html":
        body = made.email.html
    elif fmt == "text":
        body = f"Subject: {made.email.subject}\n\n{made.email.text}"
    else:
        body = made.envelope.data.decode("utf-8")
    if output:
        output.write_text(body, encoding="utf-8", newline="")  # eml keeps its CRLF
        click.echo(f"wrote {output}")
    else:
        click.echo(body, nl=False)


def say_if_never_sent(rules: Iterable[tuple[Rule | None, str]], symptoms: Collection[str]) -> None:
    """A note (stderr) for each rule these symptoms fail: such a patient never gets
    this email, though the preview shows it."""
    for rule, what in rules:
        if rule is not None and not rule.matches(symptoms):
            click.echo(
                f"note: a patient with these symptoms never gets this {what} "
                f"({rule.describe()}); shown anyway",
                err=True,
            )
