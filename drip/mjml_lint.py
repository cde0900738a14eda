"""Catch MJML+Jinja combinations that mjml-python (MRML) breaks, at the source line.

Found by compiling test templates with mjml-python 1.4 (see README, 'Jinja inside
MJML'). Each rule here is a case where the compile fails, silently drops the
Jinja, or silently produces the wrong layout. Unknown `mj-` tags are flagged too,
because MRML ignores them without a word.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

KNOWN_TAGS = frozenset(
    {
        "mjml",
        "mj-head",
        "mj-body",
        "mj-include",
        "mj-attributes",
        "mj-all",
        "mj-class",
        "mj-breakpoint",
        "mj-font",
        "mj-preview",
        "mj-style",
        "mj-title",
        "mj-html-attributes",
        "mj-html-attribute",
        "mj-selector",
        "mj-accordion",
        "mj-accordion-element",
        "mj-accordion-title",
        "mj-accordion-text",
        "mj-button",
        "mj-carousel",
        "mj-carousel-image",
        "mj-column",
        "mj-divider",
        "mj-group",
        "mj-hero",
        "mj-image",
        "mj-navbar",
        "mj-navbar-link",
        "mj-raw",
        "mj-section",
        "mj-social",
        "mj-social-element",
        "mj-spacer",
        "mj-table",
        "mj-text",
        "mj-wrapper",
    }
)

_JINJA = re.compile(r"\{%.*?%\}|\{\{.*?\}\}", re.S)
_TAG = re.compile(r"<(/?)(mj-[a-z-]+|mjml)\b([^>]*)>", re.S)
_ATTR_DQ = re.compile(r'([a-z-]+)="([^"]*)"')
_WIDTH_TAGS = ("mj-column", "mj-image", "mj-group")


def _line(src: str, offset: int) -> int:
    return src.count("\n", 0, offset) + 1


def lint_mjml(src: str) -> Iterator[tuple[int, str]]:
    """Yield (line, message) for each construct known to break."""
    for m in _JINJA.finditer(src):
        inner = m.group(0)[2:-2]
        if "<" in inner:
            yield (
                _line(src, m.start()),
                f"'<' inside {m.group(0)!r} breaks the MJML compiler; "
                "flip the comparison and use '>' instead",
            )
        # inside a double-quoted attribute (an odd number of quotes since the tag
        # opened), a double quote in the Jinja ends the attribute for MJML's parser
        opened = src.rfind("<", 0, m.start())
        if (
            '"' in inner
            and opened > src.rfind(">", 0, m.start())
            and src.count('"', opened, m.start()) % 2 == 1
        ):
            yield (
                _line(src, m.start()),
                "double quotes inside Jinja inside a double-quoted attribute break "
                "MJML; use single quotes inside the Jinja",
            )
    for tag in _TAG.finditer(src):
        closing, name, attrs = tag.groups()
        line = _line(src, tag.start())
        if name not in KNOWN_TAGS:
            yield line, f"unknown MJML tag <{name}>; MJML would drop it silently"
            continue
        if closing:
            continue
        for attr in _ATTR_DQ.finditer(attrs):
            key, value = attr.groups()
            if name in _WIDTH_TAGS and key == "width" and "{" in value:
                yield (
                    line,
                    (
                        f"Jinja in <{name} {key}=...> is dropped by MJML; "
                        "widths must be fixed values"
                    ),
                )
    for m in re.finditer(r"\{%-?\s*(if|for)\b[^%]*%\}\s*<mj-column", src):
        yield (
            _line(src, m.start()),
            "{% if %} or {% for %} around an <mj-column> gives a broken layout "
            "(column widths are fixed when MJML compiles); wrap the whole "
            "<mj-section> or the content inside <mj-text> instead",
        )
    for m in re.finditer(r"<mj-style[^>]*>(.*?)</mj-style>", src, re.S):
        if "{#" in m.group(1):
            yield (
                _line(src, m.start()),
                "'{#' inside <mj-style> starts a Jinja comment; add a space: '{ #'",
            )
