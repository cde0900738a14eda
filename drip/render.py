"""Turn a step's MJML+Jinja template into the HTML and text a subscriber receives.

MJML is compiled to HTML once per template per run (mjml-python, ~0.05 ms), the
result is compiled as a Jinja template, and only the cheap Jinja render runs per
subscriber. The plain-text part comes from an authored `<name>.txt` template when
there is one, else from the compiled HTML converted to text once (inscriptis);
the Jinja tags survive that conversion, so text is rendered per subscriber too.

Each email is `_layout.mjml` with the step's template included where the layout
says `<mj-include path="content" />`.
"""

from __future__ import annotations

import difflib
import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mjml
from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from jinja2 import (
    Environment,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    nodes,
)
from jinja2 import Template as JinjaTemplate
from markupsafe import escape

from .config import Campaign, Config, Step
from .mjml_lint import lint_mjml
from .variants import Shape, Variants, read_only, shape_of

LAYOUT = "_layout"
CONTENT_INCLUDE = "content"


class TemplateProblem(Exception):
    """A template that cannot be used, with the file and line to look at."""

    def __init__(self, template: str, line: int | None, message: str):
        self.template, self.line, self.message = template, line, message
        where = f"{template}:{line}" if line else template
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Compiled:
    name: str
    html: JinjaTemplate
    text: JinjaTemplate
    variables: frozenset[str]
    # the Jinja each part runs, and the files it came from (label, text), so a
    # render error is reported at the line a person wrote, not in MJML's output
    html_source: str = ""
    text_source: str = ""
    text_label: str = ""  # the authored .txt file, if any
    sources: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str


def _text_config() -> ParserConfig:
    return ParserConfig(css=CSS_PROFILES["strict"], display_links=True, display_anchors=False)


class Renderer:
    """Compiles each template once and renders it for many subscribers."""

    def __init__(self, templates_dir: Path, reuse: bool = True):
        """`reuse`: render once per variant and fill in each patient's own values
        (drip/variants.py); False renders every email in full (what tests compare with)."""
        self.dir = templates_dir
        self.html_env = Environment(
            undefined=StrictUndefined, autoescape=True, keep_trailing_newline=True
        )
        self.text_env = Environment(undefined=StrictUndefined, autoescape=False)
        self._cache: dict[str, Compiled] = {}
        self._lines: dict[str, JinjaTemplate] = {}  # subjects and preheaders
        self._globals: dict[JinjaTemplate, dict[str, Any]] = {}  # see _render
        self.variants = Variants() if reuse else None
        self._shapes: dict[JinjaTemplate, Shape | None] = {}
        self.compilations = 0  # how many MJML compiles this renderer did (once per template)

    # -- compile (once per template) -------------------------------------------------

    def file(self, name: str, suffix: str = ".mjml") -> Path:
        """A template's file. "newsletters/travel" lives beside templates/emails/."""
        if "/" in name:
            return self.dir.parent / f"{name}{suffix}"
        return self.dir / f"{name}{suffix}"

    def source(self, name: str) -> str:
        return read_template(self.file(name))

    def compile(self, name: str) -> Compiled:
        if name not in self._cache:
            self._cache[name] = self._compile(name)
        return self._cache[name]

    def _compile(self, name: str) -> Compiled:
        layout_src, body_src = self.source(LAYOUT), self.source(name)
        sources = {self._label(LAYOUT): layout_src, self._label(name): body_src}
        variables: set[str] = set()
        for label, src in sources.items():
            variables |= self._check_source(label, src)
        includes: dict[str, str] = {}
        unreadable: list[TemplateProblem] = []  # raised after MJML: not through its Rust code

        def loader(path: str) -> str:
            if path == CONTENT_INCLUDE:
                return body_src
            safe = Path(path).name  # includes stay inside templates/emails
            try:
                text = self.source(safe.removesuffix(".mjml"))
            except TemplateProblem as problem:
                unreadable.append(problem)
                return ""
            includes[safe] = text
            return text

        try:
            html = mjml.mjml2html(layout_src, include_loader=loader)
        except Exception as exc:  # MRML raises ValueError with its own message
            if unreadable:
                raise unreadable[0] from None
            raise TemplateProblem(
                self._label(name), None, f"MJML could not compile it: {exc}"
            ) from None
        if unreadable:
            raise unreadable[0]
        self.compilations += 1
        for label, src in ((f"{self.dir}/{n}", s) for n, s in includes.items()):
            variables |= self._check_source(label, src)

        try:
            html_template = self.html_env.from_string(html)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(
                self._label(name),
                None,
                "MJML changed the Jinja so it no longer parses "
                f"({exc.message}); see README, 'Jinja inside MJML'",
            ) from None
        lost = variables - meta.find_undeclared_variables(self.html_env.parse(html))
        if lost:
            raise TemplateProblem(
                self._label(name),
                None,
                f"MJML dropped the Jinja using {', '.join(sorted(lost))} (Jinja in an "
                "attribute MJML rewrites, e.g. a width); see README, 'Jinja inside MJML'",
            )
        text_template, text_source, text_label = self._text_template(name, html)
        files = {self._label(name): body_src}
        files.update((f"{self.dir}/{n}", src) for n, src in includes.items())
        files[self._label(LAYOUT)] = layout_src
        if text_label:
            files[text_label] = text_source
        return Compiled(
            name,
            html_template,
            text_template,
            frozenset(variables),
            html,
            text_source,
            text_label,
            tuple(files.items()),
        )

    def _label(self, name: str) -> str:
        return str(self.file(name))

    def _check_source(self, label: str, src: str) -> set[str]:
        """Jinja syntax and MJML pitfalls, reported at the source line."""
        try:
            ast = self.html_env.parse(src)
            # also raises for an unknown filter or test outside an {% if %}
            variables = set(meta.find_undeclared_variables(ast))
        except TemplateSyntaxError as exc:
            raise TemplateProblem(label, exc.lineno, exc.message or "Jinja syntax error") from None
        for line, message in lint_mjml(src):
            raise TemplateProblem(label, line, message)
        return variables

    def _text_template(self, name: str, html: str) -> tuple[JinjaTemplate, str, str]:
        """The text part's template, its Jinja source, and the authored file (if any)."""
        authored = self.file(name, ".txt")
        written = ""
        if authored.is_file():
            src = read_template(authored)
            label = written = str(authored)
        else:
            src = html_to_text(html)
            label = self._label(name) + " (text part)"
            if _tags_in_table_context(html):
                raise TemplateProblem(
                    self._label(name),
                    None,
                    "a {% if %} or {% for %} between MJML elements (e.g. around an "
                    "<mj-button>) is lost when the HTML becomes plain text; wrap whole "
                    f"<mj-section>s instead, or write {Path(name).name}.txt by hand",
                )
        try:
            return self.text_env.from_string(src), src, written
        except TemplateSyntaxError as exc:
            raise TemplateProblem(label, exc.lineno, exc.message or "Jinja syntax error") from None

    # -- render (per subscriber) -----------------------------------------------------

    def line_template(self, step: Step, name: str) -> JinjaTemplate:
        source = getattr(step, name)
        if source not in self._lines:
            try:
                self._lines[source] = self.text_env.from_string(source)
            except TemplateSyntaxError as exc:
                raise _step_problem(step, name, exc.message or "Jinja syntax error") from None
        return self._lines[source]

    def step_asts(self, step: Step) -> list[nodes.Template]:
        """The Jinja trees one email runs: the compiled template (layout, content and
        includes), its text part, the subject and the preheader. `drip check` reads
        them to find which answers the email depends on."""
        compiled = self.compile(step.template)
        for name in ("subject", "preheader"):
            self.line_template(step, name)  # syntax and unknown filters, with the line
        return [
            self.html_env.parse(compiled.html_source),
            self.text_env.parse(compiled.text_source),
            self.text_env.parse(step.subject),
            self.text_env.parse(step.preheader),
        ]

    def render(self, step: Step, context: Mapping[str, Any]) -> RenderedEmail:
        """One email. Any error in the templates (an undefined name in a branch, a
        bad filter call) is a TemplateProblem naming the file and line, never
        anything else, so a sender can fail that one message and go on."""
        compiled = self.compile(step.template)
        parts: dict[str, str] = {}
        for name in ("subject", "preheader"):
            source = getattr(step, name)
            if "{" not in source:  # most subjects are plain text: no Jinja to run
                parts[name] = one_line(source)
                continue
            try:
                parts[name] = one_line(self.line_template(step, name).render(context))
            except Exception as exc:  # any template error is the author's to fix
                raise _step_problem(step, name, _describe(exc, context)) from None
        full = {**context, **parts}
        key = self.variants.key(full) if self.variants is not None else None
        try:
            html = self._part(compiled.html, compiled.html_source, full, key, _html_quote)
        except Exception as exc:
            raise self._located(compiled, compiled.html_source, exc, full) from None
        try:
            text = self._part(compiled.text, compiled.text_source, full, key, str, tidy_text)
        except Exception as exc:
            raise self._located(compiled, compiled.text_source, exc, full) from None
        return RenderedEmail(parts["subject"], parts["preheader"], html, text)

    def _part(
        self,
        template: JinjaTemplate,
        source: str,
        context: dict[str, Any],
        key: tuple[Any, ...] | None,
        quote: Callable[[str], str],
        tidy: Callable[[str], str] | None = None,
    ) -> str:
        """One part of an email: its variant with the personal values filled in when
        the template and the context allow it (drip/variants.py), else rendered in full."""
        if self.variants is not None and key is not None:
            if template not in self._shapes:
                self._shapes[template] = shape_of(template.environment.parse(source))
            shape = self._shapes[template]
            if shape is not None:
                found = self.variants.render(
                    template, shape, key, context, lambda c: self._render(template, c), quote, tidy
                )
                if found is not None:
                    return found
        out = self._render(template, context)
        return tidy(out) if tidy is not None else out

    def _render(self, template: JinjaTemplate, context: dict[str, Any]) -> str:
        """template.render(context), less Jinja's merging of its globals into every
        call's context (a ChainMap walked key by key, ~10% of building an email):
        they are merged once per template and the context goes in as is."""
        flat = self._globals.get(template)
        if flat is None:
            flat = self._globals[template] = dict(template.globals)
        ctx = template.new_context({**flat, **context}, shared=True)
        try:
            return template.environment.concat(template.root_render_func(ctx))
        except Exception:
            template.environment.handle_exception()  # raises, with the template's lines

    def _located(
        self, compiled: Compiled, source: str, exc: Exception, context: Mapping[str, Any]
    ) -> TemplateProblem:
        """A render error at the file and line a person wrote.

        Jinja reports the line in what it ran: MJML's output for the HTML part. The
        Jinja tags pass through MJML unchanged, so the tag on that line is looked up
        in the layout, the step's template, its includes and its .txt file."""
        message = _describe(exc, context)
        lines = source.splitlines()
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<template>"]
        lineno = frames[-1].lineno if frames else None
        text = lines[lineno - 1] if lineno and 0 < lineno <= len(lines) else ""
        candidates = _JINJA_TAG.findall(text) or ([text.strip()] if len(text.strip()) > 8 else [])
        named = re.findall(r"'([^']+)'", message)
        candidates.sort(key=lambda tag: not any(n in tag for n in named))
        for tag in candidates:
            for label, src in compiled.sources:
                at = src.find(tag)
                if at >= 0:
                    return TemplateProblem(label, src.count("\n", 0, at) + 1, message)
        return TemplateProblem(self._label(compiled.name), None, message)


_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}")


def _html_quote(value: str) -> str:
    """A string as the HTML environment prints it (autoescape)."""
    return str(escape(value))


def read_template(path: Path) -> str:
    """A template file's text, or a TemplateProblem saying plainly why not."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TemplateProblem(str(path), None, "template file not found") from None
    except IsADirectoryError:
        raise TemplateProblem(str(path), None, "is a folder, not a template file") from None
    except OSError as exc:
        raise TemplateProblem(str(path), None, f"cannot be read: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TemplateProblem(
            str(path), line, f"is not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8"
        ) from None


def _step_problem(step: Step, name: str, message: str) -> TemplateProblem:
    origin = step.origin
    where = f"{origin.path}.{name}" if origin.path else name
    return TemplateProblem(
        origin.file or f"step {step.key!r}", origin.line(name), f"{where}: {message}"
    )


_NO_ATTRIBUTE = re.compile(r"has no attribute '([^']+)'")


def _describe(exc: Exception, context: Mapping[str, Any]) -> str:
    """One sentence for a render error, with a close known key when a name is misspelt."""
    if isinstance(exc, UndefinedError):
        # the shared, read-only parts of a context (shared_part) are dicts to a reader
        message = f"undefined: {exc.message}".replace("'mappingproxy object'", "'dict object'")
        missing = _NO_ATTRIBUTE.search(exc.message or "")
        if missing:
            known = [k for v in context.values() if isinstance(v, Mapping) for k in v]
            close = difflib.get_close_matches(missing.group(1), known, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
        return message
    if isinstance(exc, TemplateError):
        return exc.message or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


_BLOCK_TAG = re.compile(r"\{%.*?%\}", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_LAST_TAG = re.compile(r"<(/?[a-zA-Z]+)[^<]*$")
_TABLE_CONTEXT = {"table", "tbody", "tr", "/tr", "/td", "/th", "thead", "/thead"}


def _tags_in_table_context(html: str) -> list[str]:
    """Jinja statements MJML placed directly inside table structure (between rows).

    The HTML renders fine (the statement renders to nothing), but HTML parsers
    move text found there out of the table, so text conversion would put the
    statement in the wrong place and the text part would show every branch.
    """
    # blank out comments (MJML's Outlook conditionals) keeping offsets
    plain = _COMMENT.sub(lambda m: " " * len(m.group(0)), html)
    found = []
    for m in _BLOCK_TAG.finditer(plain):
        last = _LAST_TAG.search(plain, 0, m.start())
        if last and last.group(1).lower() in _TABLE_CONTEXT:
            found.append(m.group(0))
    return found


_MD_LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\n]+)\)")
_BLANKS = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """Readable plain text from email HTML: links as 'label: url', no padding."""
    text = get_text(html, _text_config())
    text = _MD_LINK.sub(
        lambda m: f"{m.group(1)}: {m.group(2)}" if m.group(1).strip() else m.group(2), text
    )
    return "\n".join(line.rstrip() for line in text.splitlines()).strip() + "\n"


def tidy_text(text: str) -> str:
    """Strip lines and squeeze the blank lines left where Jinja blocks were."""
    lines = "\n".join(
        line.strip() if not line.lstrip().startswith("*") else line.rstrip()
        for line in text.splitlines()
    )
    return _BLANKS.sub("\n\n", lines).strip() + "\n"


def one_line(value: str) -> str:
    """Header-safe: any CR, LF or run of whitespace becomes one space."""
    return " ".join(value.split())


def step_number(campaign: Campaign, step: Step) -> int:
    return campaign.steps.index(step) + 1


_BASE_CONTEXTS: dict[int, tuple[Config, dict[str, Any]]] = {}


def base_context(config: Config) -> dict[str, Any]:
    """What every email's Jinja context holds regardless of the subscriber (built once
    per config; the templates only read it)."""
    cached = _BASE_CONTEXTS.get(id(config))
    if cached is None or cached[0] is not config:
        cached = _BASE_CONTEXTS[id(config)] = (config, _base_context(config))
    return dict(cached[1])


def _base_context(config: Config) -> dict[str, Any]:
    clinic = config.clinic
    return {
        "clinic": read_only(
            {
                "name": clinic.name,
                "postal_address": clinic.postal_address,
                "address_lines": [
                    ln.strip() for ln in clinic.postal_address.splitlines() if ln.strip()
                ],
                "phone": clinic.phone,
                "booking_url": clinic.booking_url or clinic.base_url,
                "base_url": clinic.base_url,
                "emergency_number": clinic.emergency_number,
                "reply_to": clinic.reply_to,
            }
        ),
    }


def subscriber_context(
    config: Config,
    *,
    first_name: str | None,
    symptoms: set[str] | frozenset[str],
    links: Mapping[str, str],
    campaign: Campaign | None = None,
    step: Step | None = None,
) -> dict[str, Any]:
    """The full Jinja context for one subscriber and one step."""
    context = dict(shared_part(config, symptoms, campaign, step))
    context.update(links)
    context["first_name"] = one_line(first_name or "")
    return context


# (config, campaign, step) by identity, and the answers -> those objects (held, so
# that their ids stay theirs) and the shared part made from them
_SHARED: dict[tuple[Any, ...], tuple[tuple[object, ...], dict[str, Any]]] = {}
MAX_SHARED = 1024


def shared_part(
    config: Config,
    symptoms: set[str] | frozenset[str],
    campaign: Campaign | None,
    step: Step | None,
) -> dict[str, Any]:
    """The part of a context that is the same for every patient with these answers
    at this step, made once, read-only: a patient's render is then one of a few
    variants (drip/variants.py tells them apart by these objects)."""
    answers = frozenset(symptoms)
    key = (id(config), id(campaign), id(step), answers)
    found = _SHARED.get(key)
    if found is None:
        if len(_SHARED) >= MAX_SHARED:
            _SHARED.clear()
        part: dict[str, Any] = {
            "clinic": base_context(config)["clinic"],
            "symptoms": read_only({k: k in answers for k in config.symptoms}),
            "red_flags": read_only({k: k in answers for k in config.red_flags}),
            # [caution] in campaigns.toml: advice kinds unsafe for these answers
            "unsafe": read_only(config.unsafe(answers)),
        }
        if campaign is not None and step is not None:
            part["step"] = read_only(
                {
                    "key": step.key,
                    "number": step_number(campaign, step),
                    "total": len(campaign.steps),
                    "campaign": campaign.name,
                }
            )
        found = _SHARED[key] = ((config, campaign, step), part)
    return found[1]


# Every name a template may use; `drip check` flags anything else by name and line.
KNOWN_VARIABLES = frozenset(
    {
        "clinic",
        "first_name",
        "symptoms",
        "red_flags",
        "unsafe",
        "step",
        "subject",
        "preheader",
        "unsubscribe_url",
        "preferences_url",
        "confirm_url",
    }
)
