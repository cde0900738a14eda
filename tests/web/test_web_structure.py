"""The web package's shape: no import circles, no demo code, no aiosmtpd in production."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
PACKAGE = REPO / "drip"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def module_names(folder: Path) -> list[str]:
    """Every module under `folder` (a package inside drip/), by dotted name."""
    names = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_web_and_demo_module_imports_first_in_a_fresh_interpreter():
    """A circle shows when its second module is imported first: try each one first."""
    names = module_names(PACKAGE / "web") + module_names(PACKAGE / "demo")
    result = _python(
        """
        import importlib, sys
        names = sys.argv[1:]
        failed = []
        for first in names:
            for loaded in [m for m in sys.modules if m == "drip" or m.startswith("drip.")]:
                del sys.modules[loaded]
            try:
                for name in [first, *names]:
                    importlib.import_module(name)
            except Exception as exc:
                failed.append(f"{first} first: {type(exc).__name__}: {exc}")
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
        """,
        *names,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "drip.web.routes" in names and "drip.demo.pages" in names


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The drip modules `path` imports anywhere in it (inside functions too), except
    under `if TYPE_CHECKING:` and its own parent packages (those are loaded first)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
            target = ".".join(p for p in (base, node.module or "") if p)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name and not name.startswith(m + ".")}


def import_graph() -> dict[str, set[str]]:
    paths = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(REPO).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    known = set(paths)
    return {name: imports_of(path, name, known) for name, path in paths.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_through_the_web_the_demo_or_the_cli():
    """Lazy imports inside functions count: they hid the cli <-> web.commands circle."""
    graph = import_graph()
    assert "drip.web.pages" in graph["drip.web.routes"]  # the graph reads relative imports
    assert "drip.web.services" not in graph["drip.web.jobs"]  # TYPE_CHECKING only
    ours = ("drip.web", "drip.demo", "drip.cli", "drip.clock")
    bad = [c for c in circles(graph) if any(m.startswith(ours) for m in c)]
    assert bad == []


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_the_production_web_app_imports_no_aiosmtpd_and_no_demo():
    result = _python(
        """
        import sys
        import drip.cli, drip.web.app, drip.web.commands, drip.web.server
        from drip.web.app import create_app
        assert "aiosmtpd" not in sys.modules, "aiosmtpd imported"
        assert not [m for m in sys.modules if m.startswith("drip.demo")], "demo imported"
        """
    )
    assert result.returncode == 0, result.stderr


def test_the_web_package_holds_no_demo_code():
    """The mail catcher, its pages, styles and clock live in drip/demo/; only the
    `drip demo` command's shell stays with the other commands (web/commands.py)."""
    for path in (PACKAGE / "web").rglob("*"):
        if path.name == "commands.py" or path.suffix not in (".py", ".html", ".css", ".js"):
            continue
        text = path.read_text()
        for word in ("aiosmtpd", "MailCatcher", "DemoClock", "demo_clock", "mail-list"):
            assert word not in text, f"{path.relative_to(REPO)} mentions {word}"
    assert (PACKAGE / "demo" / "templates" / "catcher.html").is_file()


def test_the_live_demo_without_aiosmtpd_says_how_to_install_it(tmp_path):
    """`pip install .` alone has no aiosmtpd: one clear line, before any work."""
    result = _python(
        """
        import sys
        sys.modules["aiosmtpd"] = None  # as if it were not installed
        from drip.cli import main
        main(prog_name="drip")
        """,
        "demo",
        "--dir",
        str(tmp_path / "demo"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "pip install 'drip[demo]'" in result.stderr
    assert "--no-serve" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "demo").exists()


def test_the_snippet_template_escapes_what_it_shows():
    """snippet.py renders templates/standalone/snippet.html, autoescaped."""
    from dataclasses import replace

    from drip.config import load_config
    from drip.web.snippet import signup_snippet

    config = load_config(REPO / "campaigns.toml")
    config = replace(config, clinic=replace(config.clinic, name="Vein & <Leg> Care"))
    html = signup_snippet(config, 'https://drip.test/x"y/')
    assert "<!-- Vein &amp; &lt;Leg&gt; Care: patient email signup" in html
    assert 'action="https://drip.test/x&#34;y/subscribe"' in html
    for key, label in config.symptoms.items():
        assert f'value="{key}"> {label}</label>' in html
    assert html.count('name="red_flag"') == len(config.red_flags) > 0
