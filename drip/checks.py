"""`drip check`: everything that must hold before a patient sees an email.

Config problems come from config.load_config. Here: every template compiles
(once), uses only known variables, and renders without error for every answer set
that reaches one of its branches (see branches.py: which answers each email reads,
all their combinations or a covering set, only answer sets a patient who gets the
step can have); each distinct rendered email then goes through the quality gates.

A problem is one line, `file:line: message`, reported once however many answer
sets and steps run into it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from .branches import FlagMap, Plan, plan_profiles, read_flags
from .config import Campaign, Config, Step
from .quality import EmailFacts, ReadingLevel, gate_email, reading_level, reading_text
from .render import KNOWN_VARIABLES, RenderedEmail, Renderer, TemplateProblem, subscriber_context
from .rules import EVERYONE

PREVIEW_LINKS = {
    "unsubscribe_url": "https://clinic.example/u/TOKEN",
    "preferences_url": "https://clinic.example/p/TOKEN",
}

# Most answer sets rendered per step (each with and without a first name) before
# switching from every combination to a covering set.
CAP = 256
NAMES: tuple[str | None, ...] = ("Alex", None)


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    emails: list[EmailFacts] = field(default_factory=list)
    profiles: int = 0  # renders
    distinct: int = 0  # distinct emails among them, each through the gates
    # campaign/step -> how its answer sets were chosen (Plan.describe)
    coverage: dict[str, str] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set, repr=False)
    # template file -> its hardest-to-read version over every step using it
    _hardest: dict[str, tuple[float, str]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str, example: str = "") -> None:
        """One line per problem: the same `file:line: message` from another answer
        set or another step is not a new problem."""
        if problem not in self._seen:
            self._seen.add(problem)
            self.problems.append(f"{problem} ({example})" if example else problem)


def preview_links(config: Config) -> dict[str, str]:
    base = config.clinic.base_url
    return {k: v.replace("https://clinic.example", base) for k, v in PREVIEW_LINKS.items()}


def flag_map(config: Config) -> FlagMap:
    """Which answers each boolean in the email context depends on.

    `symptoms.x` and `red_flags.x` depend on answer x alone; any other dict of
    booleans added to the context later is found too, by ticking each answer alone
    (and unticking it from everything) and seeing which entries change."""
    universe = sorted({*config.symptoms, *config.red_flags})

    def booleans(answers: set[str]) -> dict[str, Mapping[str, bool]]:
        context = subscriber_context(config, first_name=None, symptoms=answers, links={})
        return {
            name: value
            for name, value in context.items()
            if isinstance(value, Mapping)
            and value
            and all(isinstance(v, bool) for v in value.values())
        }

    none, every = booleans(set()), booleans(set(universe))
    depends = {g: {e: set[str]() for e in entries} for g, entries in none.items()}
    for key in universe:
        alone, without = booleans({key}), booleans(set(universe) - {key})
        for group, entries in depends.items():
            for entry, keys in entries.items():
                if (
                    alone[group][entry] != none[group][entry]
                    or without[group][entry] != every[group][entry]
                ):
                    keys.add(key)
    return {g: {e: frozenset(k) for e, k in entries.items()} for g, entries in depends.items()}


def check_config(
    config: Config, renderer: Renderer | None = None, readability: bool = True, cap: int = CAP
) -> CheckReport:
    """Every step rendered for every answer set that matters, through every gate.
    `readability=False` skips the reading level (the slow gate) for `drip send`."""
    renderer = renderer or Renderer(config.templates_dir)
    report = CheckReport()
    flags = flag_map(config)
    for campaign in config.campaigns:
        for step in campaign.steps:
            _check_step(config, renderer, campaign, step, report, flags, readability, cap)
    for newsletter in config.newsletters:  # same layout, context and gates as the series
        _check_step(
            config, renderer, newsletter.campaign, newsletter.step, report, flags, readability, cap
        )
    limit = config.quality.max_grade
    for template_file, (grade, example) in report._hardest.items():
        if grade > limit:  # one line per template, at its hardest version
            report.add(
                f"{template_file}: reads at Flesch-Kincaid grade {grade}, above the limit "
                f"of {limit:g}; use shorter sentences and common words",
                f"e.g. {example}",
            )
    return report


def _check_step(
    config: Config,
    renderer: Renderer,
    campaign: Campaign,
    step: Step,
    report: CheckReport,
    flags: FlagMap,
    readability: bool,
    cap: int,
) -> None:
    shown = step  # what is rendered: the step, less a subject or preheader that is broken
    for line in ("subject", "preheader"):
        try:
            renderer.line_template(step, line)
        except TemplateProblem as exc:  # say so, and go on checking the template
            report.add(str(exc))
            if line == "subject":
                shown = replace(shown, subject="(the subject)")
            else:
                shown = replace(shown, preheader="(the preheader)")
    try:
        compiled = renderer.compile(step.template)
        unknown = compiled.variables - KNOWN_VARIABLES
        if unknown:
            for name in sorted(unknown):
                report.add(_unknown_variable(renderer, step.template, name))
            return
        trees = renderer.step_asts(shown)
    except TemplateProblem as exc:
        report.add(str(exc))
        return
    plan = plan_profiles(
        read_flags(trees, flags),
        {*config.symptoms, *config.red_flags},
        (campaign.audience, step.when or EVERYONE),
        cap,
    )
    report.coverage[f"{campaign.key}/{step.key}"] = plan.describe()
    links = preview_links(config)
    template_file = str(renderer.dir / f"{step.template}.mjml")
    gated: set[tuple[str, str, str, str]] = set()
    worst: tuple[ReadingLevel, str] | None = None
    worst_dale_chall = 0.0
    # fewest answers first: the example given with a problem is the simplest one
    for answers in sorted(plan.profiles, key=lambda p: (len(p), sorted(p))):
        for first_name in NAMES:
            example = _preview_command(campaign, step, answers, first_name)
            context = subscriber_context(
                config,
                first_name=first_name,
                symptoms=set(answers),
                links=links,
                campaign=campaign,
                step=step,
            )
            report.profiles += 1
            try:
                email = renderer.render(shown, context)
            except TemplateProblem as exc:
                report.add(str(exc), f"e.g. {example}")
                continue
            key = (email.subject, email.preheader, email.html, email.text)
            if key in gated:  # the same email from other answers: already gated
                continue
            gated.add(key)
            report.distinct += 1
            _gate(config, campaign, step, email, example, template_file, report)
            prose = reading_text(email.text)
            if readability and prose:
                level = _measure(prose)
                worst_dale_chall = max(worst_dale_chall, level.dale_chall)
                if worst is None or level.flesch_kincaid > worst[0].flesch_kincaid:
                    worst = (level, example)
    if worst is None:
        report.emails.append(EmailFacts(campaign.key, step.key, step.subject, 0.0, 0))
        return
    level, example = worst
    report.emails.append(
        EmailFacts(
            campaign.key,
            step.key,
            step.subject,
            level.flesch_kincaid,
            level.words,
            worst_dale_chall,
        )
    )
    if level.flesch_kincaid > report._hardest.get(template_file, (0.0, ""))[0]:
        report._hardest[template_file] = (level.flesch_kincaid, example)


_levels: dict[str, ReadingLevel] = {}


def _measure(prose: str) -> ReadingLevel:
    """Reading level per distinct text: many answer sets share one."""
    if prose not in _levels:
        if len(_levels) > 4096:
            _levels.clear()
        _levels[prose] = reading_level(prose)
    return _levels[prose]


def _gate(
    config: Config,
    campaign: Campaign,
    step: Step,
    email: RenderedEmail,
    example: str,
    template_file: str,
    report: CheckReport,
) -> None:
    """The quality gates, each complaint at the line to change: the step's subject or
    preheader in campaigns.toml, or else the template."""
    _, issues = gate_email(config, campaign, step, email, example, readability=False)
    for issue in issues:
        name = issue.split(" ", 1)[0]
        if name in ("subject", "preheader"):
            origin = step.origin
            line = origin.line(name)
            file = origin.file or f"step {step.key!r}"
            where = f"{file}:{line}" if line else file
            path = f"{origin.path}.{name}" if origin.path else name
            report.add(f"{where}: {path}: {issue.split(' ', 1)[1]}")
        else:
            report.add(f"{template_file}: {issue}", f"e.g. {example}")


def _preview_command(
    campaign: Campaign, step: Step, answers: frozenset[str], name: str | None
) -> str:
    """The command that shows this email, to reproduce a problem."""
    command = f"drip preview {campaign.key} {step.key}"
    if answers:
        command += f" --symptoms {','.join(sorted(answers))}"
    return command + (" --name ''" if name is None else "")


def coverage_plan(config: Config, renderer: Renderer, campaign: Campaign, step: Step) -> Plan:
    """The answer sets `drip check` renders for one step (for tests and tools)."""
    return plan_profiles(
        read_flags(renderer.step_asts(step), flag_map(config)),
        {*config.symptoms, *config.red_flags},
        (campaign.audience, step.when or EVERYONE),
        CAP,
    )


def _unknown_variable(renderer: Renderer, template: str, name: str) -> str:
    import difflib
    import re

    path = renderer.dir / f"{template}.mjml"
    line = None
    for source_path in (path, renderer.dir / "_layout.mjml"):
        if not source_path.exists():
            continue
        text = source_path.read_text(encoding="utf-8", errors="replace")
        for number, row in enumerate(text.splitlines(), start=1):
            if re.search(rf"\b{re.escape(name)}\b", row) and ("{{" in row or "{%" in row):
                line, path = number, source_path
                break
        if line:
            break
    close = difflib.get_close_matches(name, sorted(KNOWN_VARIABLES), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    where = f"{path}:{line}" if line else str(path)
    return f"{where}: unknown variable {name!r}{hint} (known: {', '.join(sorted(KNOWN_VARIABLES))})"
