"""One Jinja render per *variant* of an email, the patient's own values filled in.

Most of an email depends only on the step and the patient's answers. A few values
are the patient's own: the first name, the signed links, the subject line. When a
template only prints those (`{{ first_name }}`) or tests whether they are set
(`{% if first_name %}`, `is defined`), its output for one patient is its output
for a stand-in string with the stand-in replaced by the patient's value, escaped
as Jinja would have escaped it. So Jinja runs once per variant (the rest of the
context, and which personal values are set) instead of once per patient.

A template that does anything else with a personal value (a filter, `or`, a
comparison, a macro, an autoescape block) has no shape here and is rendered per
patient, as before. tests/test_render.py checks that both ways give the same text.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from jinja2 import nodes

# the values that differ from patient to patient while the answers stay the same
PERSONAL = (
    "first_name",
    "unsubscribe_url",
    "preferences_url",
    "confirm_url",
    "subject",
    "preheader",
)
_PERSONAL = frozenset(PERSONAL)
MAX_VARIANTS = 1024  # then start again: bounded memory whatever the answer sets
_ABSENT = object()

# nodes around which a printed value may not come out as printed: a filter block
# or macro could change the stand-in, an autoescape block its escaping
_OPAQUE = (
    nodes.EvalContextModifier,
    nodes.FilterBlock,
    nodes.Macro,
    nodes.CallBlock,
    nodes.AssignBlock,
    nodes.Block,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Extends,
)


@dataclass(frozen=True)
class Shape:
    """How a template reads the personal values: the ones it prints."""

    printed: frozenset[str]


def shape_of(tree: nodes.Template) -> Shape | None:
    """The template's shape, or None when it does more than print or test a
    personal value (then it is rendered per patient)."""
    if any(True for _ in tree.find_all(_OPAQUE)):
        return None
    # output that differs from one render to the next cannot be shared
    if any(f.name == "random" for f in tree.find_all(nodes.Filter)) or any(
        n.name == "lipsum" for n in tree.find_all(nodes.Name)
    ):
        return None
    printed: set[str] = set()

    def fits(node: nodes.Node) -> bool:
        for child in node.iter_child_nodes():
            if isinstance(child, nodes.Name) and child.name in PERSONAL:
                if child.ctx != "load":
                    return False
                if isinstance(node, nodes.Output):
                    printed.add(child.name)
                elif not _only_truth_or_presence(node, child):
                    return False
            if not fits(child):
                return False
        return True

    return Shape(frozenset(printed)) if fits(tree) else None


def _only_truth_or_presence(parent: nodes.Node, name: nodes.Name) -> bool:
    """`{% if name %}`, `{{ a if name else b }}`, `not name`, `name is defined`."""
    if isinstance(parent, nodes.If | nodes.CondExpr):
        return parent.test is name
    if isinstance(parent, nodes.Not):
        return True
    return (
        isinstance(parent, nodes.Test)
        and parent.node is name
        and parent.name in ("defined", "undefined")
    )


_SCALARS = frozenset({str, int, float, bool, type(None)})
_READ_ONLY: dict[int, MappingProxyType[str, Any]] = {}  # made by read_only(), by id
MAX_READ_ONLY = 8192  # then forgotten: contexts with them render in full, as is safe


def read_only(mapping: Mapping[str, Any]) -> MappingProxyType[str, Any]:
    """A mapping nobody can change: a proxy over a private copy, each value a scalar
    or a tuple of scalars (lists become tuples). A context's shared parts are made
    with it (render.shared_part), so that one such object is one value for as long
    as it is alive, and a variant can be told by identity."""
    copy: dict[str, Any] = {}
    for name, value in mapping.items():
        if type(value) in (list, tuple) and all(type(v) in _SCALARS for v in value):
            value = tuple(value)
        elif type(value) not in _SCALARS:
            raise TypeError(f"{name}: {type(value).__name__} is not a plain value")
        copy[name] = value
    proxy = MappingProxyType(copy)
    if len(_READ_ONLY) >= MAX_READ_ONLY:
        _READ_ONLY.clear()
    _READ_ONLY[id(proxy)] = proxy  # held, so that its id stays its own
    return proxy


def _fixed(value: Any) -> bool:
    """Whether this object's value can never change: a scalar, a tuple or frozenset
    of scalars, or a mapping made by read_only()."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is tuple or kind is frozenset:
        return all(type(v) in _SCALARS for v in value)
    return kind is MappingProxyType and _READ_ONLY.get(id(value)) is value


class Variants:
    """Renders through `render` once per variant and fills in the personal values.

    A variant is the template, the context's other values *by identity* (each
    read-only, and held here so that no other object can take its id), and, for
    each personal value, whether it is set and truthy. Contexts made by
    render.subscriber_context share those objects between patients with the same
    answers at the same step, so telling a variant costs a few lookups."""

    def __init__(self) -> None:
        token = secrets.token_hex(8)
        self._mark = f"\x1bdrip-{token}-"  # in no template, answer or setting
        self._stand_in = {name: f"{self._mark}{name}\x1b" for name in PERSONAL}
        self._cut = re.compile(re.escape(self._mark) + r"([a-z_]+)\x1b")
        self._done: dict[tuple[Any, ...], _Variant] = {}
        self.renders = 0  # Jinja renders run for variants (the rest were filled in)

    def key(self, context: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """What decides this context's output but the personal values themselves;
        None if some other value could change under the same object (a dict, a list)."""
        rest: list[tuple[str, int]] = []
        for name, value in context.items():
            if name in _PERSONAL:
                continue
            if not _fixed(value):
                return None
            rest.append((name, id(value)))
        facts: list[object] = []
        for name in PERSONAL:
            value = context.get(name, _ABSENT)
            if value is _ABSENT:
                facts.append(False)
            elif type(value) not in _SCALARS:
                return None  # its truth could be anything: render in full
            elif value:
                facts.append(True)
            else:  # falsy ("", None, 0, False, -0.0): printed as itself, so keyed by it
                facts.append((type(value), repr(value)))
        return (tuple(rest), tuple(facts))

    def render(
        self,
        template: object,
        shape: Shape,
        key: tuple[Any, ...],
        context: Mapping[str, Any],
        render: Callable[[dict[str, Any]], str],
        quote: Callable[[str], str],
        tidy: Callable[[str], str] | None = None,
    ) -> str | None:
        """The template's output for `context` (whose `key` this is), or None if it
        cannot be had this way (then render it in full). `quote`: how Jinja prints a
        string in this template; `tidy`: what the output goes through after Jinja
        (applied to the variant once, when the values cannot change what it does)."""
        # set and truthy: stand-ins (falsy values are printed as themselves, and keyed)
        filled = [name for name in shape.printed if context.get(name)]
        entry = self._done.get((template, key))
        if entry is None:
            entry = self._made(template, key, context, filled, render, tidy)
        if entry.pieces is None:
            return None
        values: dict[str, str] = {}  # only those the variant prints, quoted once
        pieces = entry.pieces.copy()
        for at, name in entry.slots:
            text = values.get(name)
            if text is None:
                text = values[name] = quote(context[name])
                if tidy is not None and not _line_safe(text):
                    return None
            pieces[at] = text
        return "".join(pieces)

    def _made(
        self,
        template: object,
        key: tuple[Any, ...],
        context: Mapping[str, Any],
        filled: list[str],
        render: Callable[[dict[str, Any]], str],
        tidy: Callable[[str], str] | None,
    ) -> _Variant:
        """Render the variant with stand-ins for the values and cut it where they are."""
        stand_in = dict(context)
        for name in filled:
            stand_in[name] = self._stand_in[name]
        out = render(stand_in)
        self.renders += 1
        if tidy is not None:
            out = tidy(out)
        cut = self._cut.split(out)  # text, name, text, name, ...
        slots = [(at, cut[at]) for at in range(1, len(cut), 2)]
        whole = all(name in filled for _, name in slots) and not any(
            self._mark in piece for piece in cut[::2]
        )  # else a stand-in did not come out as printed: this variant renders in full
        if len(self._done) >= MAX_VARIANTS:
            self._done.clear()
        # the values whose ids are in the key, held so that their ids stay theirs
        held = [value for name, value in context.items() if name not in _PERSONAL]
        entry = self._done[(template, key)] = _Variant(cut if whole else None, slots, held)
        return entry


@dataclass(frozen=True)
class _Variant:
    pieces: list[str] | None  # None: this variant is rendered in full
    slots: list[tuple[int, str]]  # where in `pieces` each personal value goes
    held: list[Any]


def _line_safe(text: str) -> bool:
    """A value that tidying a text part leaves as it is wherever it stands: on one
    line, no space at either end, not starting a "*" bullet."""
    return text == text.strip() and not text.startswith("*") and len(text.splitlines()) == 1
