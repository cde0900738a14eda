"""`drip check`: everything that must hold before a patient sees an email.

Config problems come from config.load_config. Here: every template compiles
(once), uses only known variables, and renders without error for every symptom
profile; each rendered email then goes through the quality gates.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from .config import Campaign, Config, Step
from .quality import EmailFacts, gate_email
from .render import KNOWN_VARIABLES, Renderer, TemplateProblem, subscriber_context

PREVIEW_LINKS = {
    "unsubscribe_url": "https://clinic.example/u/TOKEN",
    "preferences_url": "https://clinic.example/p/TOKEN",
}


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    emails: list[EmailFacts] = field(default_factory=list)
    profiles: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def profiles(config: Config) -> Iterator[tuple[str, set[str]]]:
    """Symptom sets every step is rendered with: none, each one alone, each red flag
    alone, and everything at once."""
    yield "no symptoms", set()
    for key in config.symptoms:
        yield key, {key}
    for key in config.red_flags:
        yield key, {key}
    yield "every symptom", set(config.symptoms) | set(config.red_flags)


def preview_links(config: Config) -> dict[str, str]:
    base = config.clinic.base_url
    return {k: v.replace("https://clinic.example", base) for k, v in PREVIEW_LINKS.items()}


def check_config(
    config: Config, renderer: Renderer | None = None, readability: bool = True
) -> CheckReport:
    renderer = renderer or Renderer(config.templates_dir)
    report = CheckReport()
    for campaign in config.campaigns:
        for step in campaign.steps:
            report.problems += _check_step(config, renderer, campaign, step, report, readability)
    for newsletter in config.newsletters:  # same layout, context and gates as the series
        report.problems += _check_step(
            config, renderer, newsletter.campaign, newsletter.step, report, readability
        )
    return report


def _check_step(
    config: Config,
    renderer: Renderer,
    campaign: Campaign,
    step: Step,
    report: CheckReport,
    readability: bool,
) -> list[str]:
    where = f"campaign {campaign.key!r} step {step.key!r}"
    try:
        compiled = renderer.compile(step.template)
    except TemplateProblem as exc:
        return [f"{exc} ({where})"]
    unknown = compiled.variables - KNOWN_VARIABLES
    if unknown:
        return [_unknown_variable(renderer, step.template, name) for name in sorted(unknown)]
    problems: list[str] = []
    seen: set[str] = set()
    worst: EmailFacts | None = None
    for label, symptoms in profiles(config):
        for name in ("Alex", None):
            context = subscriber_context(
                config,
                first_name=name,
                symptoms=symptoms,
                links=preview_links(config),
                campaign=campaign,
                step=step,
            )
            report.profiles += 1
            try:
                email = renderer.render(step, context)
            except TemplateProblem as exc:
                problems.append(f"{exc} ({where}, profile {label!r})")
                return problems
            facts, issues = gate_email(config, campaign, step, email, label, readability)
            # report the hardest-to-read version of this email across profiles
            if worst is None or facts.grade > worst.grade:
                worst = facts
            for issue in issues:
                if issue not in seen:  # the same flaw in many profiles is one problem
                    seen.add(issue)
                    problems.append(f"{where}: {issue}")
    if worst is not None:
        report.emails.append(worst)
    return problems


def _unknown_variable(renderer: Renderer, template: str, name: str) -> str:
    import difflib

    path = renderer.dir / f"{template}.mjml"
    line = None
    for source_path in (path, renderer.dir / "_layout.mjml"):
        if not source_path.exists():
            continue
        for number, text in enumerate(source_path.read_text().splitlines(), start=1):
            if re.search(rf"\b{re.escape(name)}\b", text) and ("{{" in text or "{%" in text):
                line, path = number, source_path
                break
        if line:
            break
    close = difflib.get_close_matches(name, sorted(KNOWN_VARIABLES), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    where = f"{path}:{line}" if line else str(path)
    return f"{where}: unknown variable {name!r}{hint} (known: {', '.join(sorted(KNOWN_VARIABLES))})"
