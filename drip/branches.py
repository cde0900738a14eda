"""Which answers an email depends on, and which answer sets reach all of its branches.

`drip check` renders each step for many answer sets (the symptoms and warning signs
a patient ticked). All 2^19 sets are far too many, and a fixed list (none, each one
alone, all) misses a branch that needs two answers and not a third. So the Jinja
trees of the email (layout, step template, includes, text part, subject, preheader)
are read for the answers they use: `symptoms.x`, `red_flags["y"]`, or any other
dict of booleans in the context, traced through `{% set %}` and `{% for %}`.

If the email reads k answers, every one of the 2^k combinations is rendered when
that is at most the cap. Beyond it, a covering set: for each branch point (`if`,
`elif`, `else`, `x if c else y`, `and`/`or`, `for`), every combination of the
answers tested on the way to it, plus every pair of answers in all four ways.
An error can only be met by reaching the expression that fails; reaching a branch
depends only on the tests on the way to it, so each branch is reached. (A branch
tested on more answers than the cap allows combining gets none, all, each alone,
all but each one, and every pair: what `or` chains and "any warning sign" need.)

Each answer set is then completed so that it passes the campaign's audience and the
step's `when` rule; a set no such patient can have is skipped and counted. Pure
logic: no files, no rendering.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from jinja2 import nodes

from .rules import Rule

# context name -> entry -> the answer keys its value depends on
FlagMap = Mapping[str, Mapping[str, frozenset[str]]]

_DICT_METHODS = frozenset({"items", "values", "keys", "get"})


@dataclass(frozen=True)
class Reads:
    """The answers an email reads, and for each branch point the answers tested on
    the way to it (its own test included)."""

    keys: frozenset[str]
    branches: tuple[frozenset[str], ...]


def read_flags(trees: Iterable[nodes.Template], flags: FlagMap) -> Reads:
    keys: set[str] = set()
    branches: set[frozenset[str]] = set()
    for tree in trees:
        walker = _Walker(flags, tree)
        keys |= walker.keys_in(tree)
        walker.walk(tree, frozenset())
        branches |= {b for b in walker.branches if b}
    return Reads(frozenset(keys), tuple(sorted(branches, key=lambda b: (len(b), sorted(b)))))


class _Walker:
    def __init__(self, flags: FlagMap, tree: nodes.Template):
        self.flags = flags
        self.branches: list[frozenset[str]] = []
        # names bound by {% set %} and {% for %} to values computed from answers
        self.aliases: dict[str, frozenset[str]] = {}
        bindings: list[tuple[nodes.Node, nodes.Node]] = []
        for assign in tree.find_all(nodes.Assign):
            bindings.append((assign.target, assign.node))
        for block in tree.find_all(nodes.AssignBlock):
            bindings += [(block.target, child) for child in block.body]
        for loop in tree.find_all(nodes.For):
            bindings.append((loop.target, loop.iter))
        for _ in range(3):  # aliases of aliases: a few rounds reach a fixed point
            for target, value in bindings:
                found = self.keys_in(value)
                for name in (
                    target.find_all(nodes.Name) if not isinstance(target, nodes.Name) else (target,)
                ):
                    self.aliases[name.name] = self.aliases.get(name.name, frozenset()) | found

    def _all(self, group: str) -> frozenset[str]:
        return frozenset().union(*self.flags[group].values())

    def keys_in(self, node: nodes.Node) -> frozenset[str]:
        """The answer keys an expression (or a whole tree) reads."""
        found: set[str] = set()
        self._collect(node, found)
        return frozenset(found)

    def _collect(self, node: nodes.Node, found: set[str]) -> None:
        if isinstance(node, nodes.Getattr | nodes.Getitem) and isinstance(node.node, nodes.Name):
            group = node.node.name
            if group in self.flags and node.node.ctx == "load":
                entries = self.flags[group]
                if isinstance(node, nodes.Getattr):
                    key: object = node.attr
                elif isinstance(node.arg, nodes.Const):
                    key = node.arg.value
                else:  # symptoms[some_variable]: could be any of them
                    found |= self._all(group)
                    self._collect(node.arg, found)
                    return
                if isinstance(key, str) and key in entries:
                    found |= entries[key]
                elif key in _DICT_METHODS:
                    found |= self._all(group)
                # an unknown key reads nothing: it fails the same way for everyone
                return
        if isinstance(node, nodes.Name) and node.ctx == "load":
            if node.name in self.flags:  # the whole dict passed on: anything
                found |= self._all(node.name)
            elif node.name in self.aliases:
                found |= self.aliases[node.name]
            return
        for child in node.iter_child_nodes():
            self._collect(child, found)

    def _branch(self, path: frozenset[str]) -> frozenset[str]:
        self.branches.append(path)
        return path

    def walk(self, node: nodes.Node, path: frozenset[str]) -> None:
        """Record, for each branch point, the answers tested on the way to it."""
        if isinstance(node, nodes.If):
            seen = path
            for test, body in [(node.test, node.body)] + [(e.test, e.body) for e in node.elif_]:
                self.walk(test, seen)
                seen = self._branch(seen | self.keys_in(test))
                for child in body:
                    self.walk(child, seen)
            for child in node.else_:
                self.walk(child, seen)
            return
        if isinstance(node, nodes.CondExpr):
            self.walk(node.test, path)
            inner = self._branch(path | self.keys_in(node.test))
            for branch in (node.expr1, node.expr2):
                if branch is not None:
                    self.walk(branch, inner)
            return
        if isinstance(node, nodes.And | nodes.Or):  # the right side runs only sometimes
            self.walk(node.left, path)
            inner = self._branch(path | self.keys_in(node.left))
            self.walk(node.right, inner)
            return
        if isinstance(node, nodes.For):
            self.walk(node.iter, path)
            tested = self.keys_in(node.iter) | (self.keys_in(node.test) if node.test else set())
            inner = self._branch(path | tested)
            for child in [*node.body, *node.else_]:
                self.walk(child, inner)
            return
        for child in node.iter_child_nodes():
            self.walk(child, path)


@dataclass(frozen=True)
class Plan:
    """The answer sets to render for one step, and how they were chosen."""

    keys: tuple[str, ...]  # the answers the email reads
    profiles: tuple[frozenset[str], ...]  # complete answer sets, each one a real patient
    considered: int  # combinations (or covering rows) of `keys` looked at
    skipped: int  # of those, how many no patient who gets this step can have
    exhaustive: bool  # every combination of `keys`, or a covering set
    cap: int

    def describe(self) -> str:
        k = len(self.keys)
        if self.exhaustive:
            text = f"reads {k} answer{'s' if k != 1 else ''}: all {self.considered} combinations"
        else:
            text = (
                f"reads {k} answers: {2**k:,} combinations > cap {self.cap}, so a covering "
                f"set of {self.considered} (every combination of the answers tested on the "
                "way to each branch, and every pair of answers)"
            )
        if self.skipped:
            text += (
                f"; {self.skipped} of them no patient of this step can have "
                "(campaign audience, step `when`): skipped"
            )
        n = len(self.profiles)
        return text + f"; {n} answer set{'s' if n != 1 else ''} rendered"


# a partial answer set: (answers ticked, answers whose value is fixed); answers not
# fixed start unticked and may be ticked to satisfy the step's rules
_Row = tuple[frozenset[str], frozenset[str]]


def plan_profiles(
    reads: Reads, universe: Iterable[str], rules: Sequence[Rule], cap: int = 256
) -> Plan:
    keys = tuple(sorted(reads.keys))
    everything = frozenset(keys)
    rows: list[_Row]
    if 2 ** len(keys) <= cap:
        rows = [(frozenset(c), everything) for c in _subsets(keys)]
        exhaustive = True
    else:
        rows = [(frozenset(), everything), (everything, everything)]
        for tested in reads.branches:
            fixed = frozenset(tested)
            if 2 ** len(tested) <= cap:
                rows += [(frozenset(c), fixed) for c in _subsets(sorted(tested))]
            else:  # too many to try all: the shapes `or` chains and `any` tests need
                rows += [(on, fixed) for on in _wide(sorted(tested))]
        rows += [(on, everything) for on in pairwise(keys)]
        exhaustive = False
    rows = list(dict.fromkeys(rows))  # unique, in order
    pool = frozenset(universe)
    profiles: list[frozenset[str]] = []
    skipped = 0
    for on, fixed in rows:
        profile = complete(on, fixed, pool, rules)
        if profile is None:
            skipped += 1
        elif profile not in profiles:
            profiles.append(profile)
    return Plan(keys, tuple(profiles), len(rows), skipped, exhaustive, cap)


def _wide(keys: Sequence[str]) -> list[frozenset[str]]:
    """For a branch tested on too many answers to try every combination: none, all,
    each alone, all but each one, and every pair both ways."""
    every = frozenset(keys)
    return [
        frozenset(),
        every,
        *(frozenset({k}) for k in keys),
        *(every - {k} for k in keys),
        *pairwise(keys),
    ]


def _subsets(keys: Sequence[str]) -> Iterable[tuple[str, ...]]:
    for size in range(len(keys) + 1):
        yield from combinations(keys, size)


def complete(
    on: frozenset[str], fixed: frozenset[str], universe: frozenset[str], rules: Sequence[Rule]
) -> frozenset[str] | None:
    """The answer set `on` (with the answers in `fixed` as given, all others free)
    completed so every rule matches, or None if no patient can have it."""
    free = universe - fixed
    must = frozenset().union(*(r.all for r in rules))
    never = frozenset().union(*(r.none for r in rules))
    if (must & (fixed - on)) or (never & on) or (must & never):
        return None
    have = set(on | (must & free))
    for rule in rules:
        if rule.any and not rule.any & have:
            options = sorted(rule.any & free - never)
            if not options:
                return None
            have.add(options[0])
    result = frozenset(have)
    return result if all(r.matches(result) for r in rules) else None


def pairwise(keys: Sequence[str]) -> list[frozenset[str]]:
    """A small set of answer sets in which every two answers appear in all four
    ways (both, neither, one, the other): a greedy 2-way covering array."""
    n = len(keys)
    uncovered = {(i, j, a, b) for i, j in combinations(range(n), 2) for a in (0, 1) for b in (0, 1)}
    rows: list[frozenset[str]] = []
    while uncovered:
        i, j, a, b = min(uncovered)
        value = {i: a, j: b}
        for k in range(n):
            if k in value:
                continue
            gains = [
                sum(
                    ((m, k, value[m], v) if m < k else (k, m, v, value[m])) in uncovered
                    for m in value
                )
                for v in (0, 1)
            ]
            value[k] = 1 if gains[1] > gains[0] else 0
        uncovered -= {(p, q, value[p], value[q]) for p, q in combinations(range(n), 2)}
        rows.append(frozenset(keys[k] for k, v in value.items() if v))
    return rows
