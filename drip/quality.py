"""Quality gates for one rendered email: law, privacy, safety, readability, markup.

Each gate returns a sentence a marketer can act on. The gates:
- reading level of the text at or below `[quality] max_grade` (Flesch-Kincaid; the
  Dale-Chall score is measured and shown next to it, not gated: see reading_level);
- no condition or symptom words in the subject or preheader (lock screens);
- postal address, unsubscribe link, preferences link, a "general information, not
  a diagnosis" line and the emergency number in every email;
- absolute https links; alt text on images; `lang` and a title on the HTML;
  nothing loaded from another host unless allowed;
- a plain-text part with no stray markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from urllib.parse import urlparse

from .config import Campaign, Config, Step
from .render import RenderedEmail

DISCLAIMER = re.compile(r"general (health )?information|not (a )?(diagnosis|medical advice)", re.I)
_URL = re.compile(r"https?://\S+")


@dataclass(frozen=True)
class EmailFacts:
    campaign: str
    step: str
    subject: str
    grade: float  # Flesch-Kincaid US grade, the gated one
    words: int
    dale_chall: float = 0.0  # Dale-Chall score (not a grade: see dale_chall_grade)

    @property
    def dale_chall_grade(self) -> str:
        return dale_chall_grade(self.dale_chall)


@dataclass(frozen=True)
class ReadingLevel:
    """Two formulas that disagree for a reason.

    Flesch-Kincaid counts sentence length and syllables per word: short sentences
    of short words score low whatever the words are. Dale-Chall counts words that
    are not on its list of about 3,000 words most US 4th graders know; textstat's
    version also counts plurals and other inflections of listed words ("legs",
    "cramps"), names, and topic words a patient must learn anyway (vein, stocking,
    compression). The first flatters the text, the second is harsh on it.
    """

    flesch_kincaid: float
    dale_chall: float
    words: int


def reading_level(prose: str) -> ReadingLevel:
    import textstat  # slow to import (a pronouncing dictionary): only when measuring

    return ReadingLevel(
        round(textstat.flesch_kincaid_grade(prose), 1),
        round(textstat.dale_chall_readability_score(prose), 1),
        textstat.lexicon_count(prose),
    )


# textstat computes the Dale-Chall formula (0.1579 x % hard words + 0.0496 x words
# per sentence, + 3.6365 when over 5% of words are hard) with the 3,000-word list;
# the usual table turns that score into a US grade band.
_DALE_CHALL_BANDS = (
    (5.0, "grade 4 and below"),
    (6.0, "grade 5-6"),
    (7.0, "grade 7-8"),
    (8.0, "grade 9-10"),
    (9.0, "grade 11-12"),
    (10.0, "grade 13-15"),
)


def dale_chall_grade(score: float) -> str:
    for below, band in _DALE_CHALL_BANDS:
        if score < below:
            return band
    return "grade 16 and above"


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.assets: list[str] = []
        self.images_without_alt = 0
        self.lang = ""
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang") or ""
        elif tag == "title":
            self._in_title = True
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        elif tag == "img":
            self.assets.append(a.get("src") or "")
            if not (a.get("alt") or "").strip():
                self.images_without_alt += 1
        elif tag in ("link", "script", "iframe") and (a.get("href") or a.get("src")):
            self.assets.append(a.get("href") or a.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


_COMMENT = re.compile(r"<!--.*?-->", re.S)
_RELEVANT = re.compile(
    r"<(?:html|a|img|link|script|iframe)\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*>"
    r"|<title\b[^>]*>.*?</title>",
    re.S | re.I,
)


def _markup_relevant(html: str) -> str:
    """Only the tags the markup gates look at (comments dropped, as a parser would).

    `drip check` gates hundreds of versions of one email that differ in their text;
    parsing 20 KB of HTML for each is what made it slow. The tags below decide every
    markup gate, so identical tags give identical results (cached)."""
    return "".join(_RELEVANT.findall(_COMMENT.sub("", html)))


@lru_cache(maxsize=512)
def _markup(relevant: str) -> _Markup:
    markup = _Markup()
    markup.feed(relevant)
    markup.close()
    return markup


def reading_text(text: str) -> str:
    """The prose a patient reads: no URLs, no lines that are only links or labels."""
    lines = []
    for line in text.splitlines():
        line = _URL.sub("", line).strip(" *:-")
        if len(line.split()) >= 3:
            lines.append(line if line.endswith((".", "!", "?", ":")) else line + ".")
    return "\n".join(lines)


def gate_email(
    config: Config,
    campaign: Campaign,
    step: Step,
    email: RenderedEmail,
    profile: str,
    readability: bool = True,
) -> tuple[EmailFacts, list[str]]:
    """Every gate's complaint about `email`. `readability=False` skips the reading
    grade, the one slow gate (textstat loads a pronouncing dictionary), for the
    pre-flight check `drip send` runs each time; `drip check` always runs it."""
    issues: list[str] = []
    quality, clinic = config.quality, config.clinic
    prose = reading_text(email.text)
    grade, words, dale_chall = 0.0, len(prose.split()), 0.0
    if readability and prose:
        level = reading_level(prose)
        grade, words, dale_chall = level.flesch_kincaid, level.words, level.dale_chall
    if grade > quality.max_grade:
        issues.append(
            f"reads at grade {grade}, above the limit of {quality.max_grade:g} "
            f"(profile {profile!r}); use shorter sentences and common words"
        )

    for label, value in (("subject", email.subject), ("preheader", email.preheader)):
        found = sorted(
            {w for w in re.findall(r"[a-z]+", value.lower()) if w in quality.banned_subject_words}
        )
        if found:
            issues.append(
                f"{label} {value!r} names a condition ({', '.join(found)}); "
                "subjects show on lock screens: keep health words out"
            )

    text_and_html = email.text + email.html
    first_address_line = clinic.postal_address.splitlines()[0].strip()
    if first_address_line not in email.text or first_address_line not in email.html:
        issues.append("the clinic's postal address is missing (CAN-SPAM)")
    for name, needle in (("unsubscribe", "/u/"), ("preferences", "/p/")):
        if needle not in email.html or needle not in email.text:
            issues.append(f"no {name} link (use {{{{ {name}_url }}}})")
    if not DISCLAIMER.search(email.text):
        issues.append("no line saying this is general information, not a diagnosis")
    if clinic.emergency_number not in text_and_html:
        issues.append(f"no emergency line (the number {clinic.emergency_number})")

    markup = _markup(_markup_relevant(email.html))
    allowed = {urlparse(clinic.base_url).hostname, *quality.allowed_asset_hosts}
    if clinic.booking_url:
        allowed.add(urlparse(clinic.booking_url).hostname)
    for href in markup.links:
        if href.startswith("mailto:") or href.startswith("tel:"):
            continue
        if not href.startswith("https://"):
            issues.append(f"link {href[:80]!r} is not an absolute https:// URL")
    for src in markup.assets:
        if urlparse(src).hostname not in allowed:
            issues.append(
                f"{src[:80]!r} loads from another host; allow it in "
                "[quality] allowed_asset_hosts or host it yourself"
            )
    if markup.images_without_alt:
        issues.append(f"{markup.images_without_alt} image(s) without alt text")
    if not markup.lang:
        issues.append('the HTML has no lang attribute (use <mjml lang="en">)')
    if not markup.title.strip():
        issues.append("the HTML has no title (use <mj-title>)")
    if re.search(r"<[a-z/][^>]*>|\{\{|\{%|&[a-z]+;", email.text):
        issues.append("the plain-text part has stray markup")
    return EmailFacts(campaign.key, step.key, email.subject, grade, words, dale_chall), issues
