"""`drip report`: a real database seeded through drip itself, real `drip send` runs
against the real SMTP sink over four simulated weeks, then the HTML parsed and its
numbers checked against the database."""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import lxml.html
import pytest
from conftest import FIXTURES, Project, make_project
from deliver_helpers import sample, write_mbox
from mailsink import MailSink
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from drip import db, enrollment, subscribers
from drip.config import load_config
from drip.models import AuditEntry, Delivery, Subscriber
from drip.rates import step_rates
from drip.web import flows

CHICAGO = ZoneInfo("America/Chicago")
NOW = "2026-06-24T18:00:00Z"
FIRST_WEEK = datetime(2026, 5, 25, tzinfo=CHICAGO)  # --weeks 5 before NOW: an empty week first
WEEKS = [FIRST_WEEK + timedelta(weeks=i) for i in range(5)]
NEWSLETTER = "newsletter:2026-06-travel"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Story:
    """Seeds the database through drip's library and the real `drip send`."""

    def __init__(self, project: Project):
        self.project = project
        self.config = load_config(project.config)
        self.engine = db.make_engine(project.database_url)
        db.ensure_schema(self.engine)

    def add(self, email: str, when: str, confirmed: bool = True) -> None:
        with Session(self.engine) as s:
            sub = subscribers.create(
                s,
                self.config,
                email=email,
                symptoms=["night_cramps"],
                now=at(when),
                confirmed=confirmed,
            )
            enrollment.sync_subscriber(s, self.config, sub, at(when))
            s.commit()

    def public_id(self, email: str) -> str:
        with Session(self.engine) as s:
            sub = s.scalar(select(Subscriber).where(Subscriber.email == email))
            assert sub is not None
            return sub.public_id

    def confirm(self, email: str, when: str) -> None:
        with Session(self.engine) as s:
            outcome, _ = flows.confirm(s, self.config, self.public_id(email), at(when), "127.0.0.1")
            assert outcome == "confirmed"
            s.commit()

    def unsubscribe(self, email: str, when: str) -> None:
        with Session(self.engine) as s:
            outcome, _ = flows.unsubscribe(s, self.config, self.public_id(email), at(when), "link")
            assert outcome == "done"
            s.commit()

    def send(self, when: str) -> None:
        result = self.project.run("send", "--now", when)
        assert result.returncode == 0, result.stdout + result.stderr

    def ref(self, email: str, step: str) -> str:
        with Session(self.engine) as s:
            return s.scalar(
                select(Delivery.ref)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Subscriber.email == email, Delivery.step_key == step)
            )

    def newsletter(self, emails: list[str], when: str) -> None:
        """Newsletter deliveries as the newsletters code records them (issue 9's data
        contract: campaign_key "newsletter:KEY", step_key KEY, status sent)."""
        with Session(self.engine) as s:
            for email in emails:
                sub = s.scalar(select(Subscriber).where(Subscriber.email == email))
                assert sub is not None
                s.add(
                    Delivery(
                        subscriber_id=sub.id,
                        campaign_key=NEWSLETTER,
                        step_key=NEWSLETTER.split(":", 1)[1],
                        status="sent",
                        ref=secrets.token_hex(16),
                        attempts=1,
                        created_at=at(when),
                        updated_at=at(when),
                        sent_at=at(when),
                    )
                )
            s.commit()


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Iterator[Story]:
    """Four weeks of a small list (2026-06-01 is a Monday; Chicago is UTC-5).

    Built once for this module (a dozen real `drip` runs); the tests only read it.
    """
    sink = MailSink().start()
    try:
        tmp = tmp_path_factory.mktemp("story")
        yield tell(Story(make_project(tmp, FIXTURES / "basic", sink.url)), sink, tmp)
    finally:
        sink.stop()


def tell(s: Story, sink: MailSink, tmp_path: Path) -> Story:
    sink.handler.by_recipient["bob@example.org"] = "reject"  # 550 5.1.1: a hard bounce
    # week 1 (from Jun 1)
    for name in ("ann", "ben", "cat", "bob"):
        s.add(f"{name}@example.org", "2026-06-01T14:30:00Z")
    s.add("dan@example.org", "2026-06-01T14:30:00Z", confirmed=False)  # never confirms
    s.add("eve@example.org", "2026-06-01T20:00:00Z", confirmed=False)
    s.send("2026-06-01T15:00:00Z")  # welcome: ann, ben, cat; bob refused
    s.confirm("eve@example.org", "2026-06-02T15:00:00Z")
    s.send("2026-06-02T16:00:00Z")  # welcome: eve
    s.send("2026-06-03T16:00:00Z")  # causes: ann, ben, cat
    s.unsubscribe("eve@example.org", "2026-06-03T18:00:00Z")  # after welcome
    s.unsubscribe("ben@example.org", "2026-06-05T20:00:00Z")  # after causes
    # week 2 (from Jun 8)
    s.send("2026-06-08T15:00:00Z")  # home-relief: ann, cat
    s.add("fay@example.org", "2026-06-09T15:00:00Z")
    s.add("gus@example.org", "2026-06-09T15:00:00Z", confirmed=False)
    s.send("2026-06-09T16:00:00Z")  # welcome: fay
    # ann reports her welcome email as spam (an ARF report through `drip bounces`)
    mbox = write_mbox(
        tmp_path / "fbl.mbox",
        [sample("arf_complaint.eml", s.ref("ann@example.org", "welcome"), "ann@example.org")],
    )
    result = s.project.run("bounces", "process", str(mbox), "--now", "2026-06-10T15:00:00Z")
    assert "1 complained" in result.stdout, result.stdout + result.stderr
    s.send("2026-06-11T16:00:00Z")  # causes: fay
    # week 3 (from Jun 15)
    s.send("2026-06-15T16:00:00Z")  # home-relief: fay
    s.add("hal@example.org", "2026-06-16T14:30:00Z")
    s.unsubscribe("cat@example.org", "2026-06-16T15:00:00Z")  # after home-relief
    s.send("2026-06-17T16:00:00Z")  # welcome: hal
    s.send("2026-06-19T16:00:00Z")  # causes: hal
    # week 4 (from Jun 22, to date)
    s.newsletter(["fay@example.org", "hal@example.org"], "2026-06-22T15:00:00Z")
    s.unsubscribe("fay@example.org", "2026-06-23T15:00:00Z")  # after the newsletter
    s.send("2026-06-23T16:00:00Z")  # home-relief: hal
    return s


# -- reading the report ------------------------------------------------------------------


def table(doc, table_id: str) -> list[dict[str, str]]:
    node = doc.get_element_by_id(table_id)
    headers = [th.text_content().strip() for th in node.xpath("./thead/tr/th")]
    return [
        dict(zip(headers, (c.text_content().strip() for c in row.xpath("./th|./td")), strict=True))
        for row in node.xpath("./tbody/tr")
    ]


def number(text: str) -> float:
    return float(text.replace(",", "").rstrip("%"))


def week_of(moment: datetime) -> int | None:
    for i in reversed(range(len(WEEKS))):
        if moment >= WEEKS[i]:
            return i
    return None


def report(project: Project, tmp_path: Path, *args: str):
    out = tmp_path / "report.html"
    result = project.run("report", "-o", str(out), "--now", NOW, *args)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out} (5 weeks from 2026-05-25)" in result.stdout
    html = out.read_text(encoding="utf-8")
    return html, lxml.html.document_fromstring(html)


def test_the_report_numbers_match_the_database(story: Story, tmp_path):
    project = story.project
    html, doc = report(project, tmp_path, "--weeks", "5")
    with Session(story.engine) as s:
        subs = list(s.scalars(select(Subscriber)))
        deliveries = list(s.scalars(select(Delivery)))
        bounced_at = {
            e.subscriber_id: e.at
            for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "subscriber.bounced"))
        }
        complained_at = {
            e.subscriber_id: e.at
            for e in s.scalars(
                select(AuditEntry).where(AuditEntry.action == "subscriber.complained")
            )
        }
        rates = step_rates(s)
        # signups never confirmed are deleted a week later by `drip send`; their
        # audit entries stay, without their id, and the report counts them from there
        purged_signups = list(
            s.scalars(
                select(AuditEntry.at).where(
                    AuditEntry.action == "subscriber.created", AuditEntry.subscriber_id.is_(None)
                )
            )
        )
        purges = select(func.count()).where(AuditEntry.action == "subscriber.purged")
        assert s.scalar(purges) == len(purged_signups) == 2
    by_email = {sub.email: sub for sub in subs}

    # signups and confirmations per week: from the subscriber rows
    rows = table(doc, "signups-table")
    assert [r["Week of"] for r in rows] == [
        "2026-05-25",
        "2026-06-01",
        "2026-06-08",
        "2026-06-15",
        "2026-06-22 (to date)",
    ]
    signups = Counter(week_of(sub.created_at) for sub in subs)
    signups.update(week_of(at) for at in purged_signups)
    confirmations = Counter(week_of(sub.confirmed_at) for sub in subs if sub.confirmed_at)
    assert [int(r["Signups"]) for r in rows] == [signups[i] for i in range(5)] == [0, 6, 2, 1, 0]
    assert [int(r["Confirmations"]) for r in rows] == [confirmations[i] for i in range(5)]
    assert [int(r["Confirmations"]) for r in rows] == [0, 5, 1, 1, 0]

    # active at the end of each week: confirmed, and not yet unsubscribed, bounced or
    # complained (a complaint sets unsubscribed_at too)
    def active(moment: datetime) -> int:
        return sum(
            1
            for sub in subs
            if sub.confirmed_at is not None
            and sub.confirmed_at < moment
            and not (sub.unsubscribed_at and sub.unsubscribed_at < moment)
            and not (sub.id in bounced_at and bounced_at[sub.id] < moment)
            and not (sub.id in complained_at and complained_at[sub.id] < moment)
        )

    ends = [*WEEKS[1:], at(NOW)]
    rows = table(doc, "active-table")
    assert [int(r["Active at the end of the week"]) for r in rows] == [active(m) for m in ends]
    assert [int(r["Active at the end of the week"]) for r in rows] == [0, 2, 2, 2, 1]
    assert int(rows[-1]["Active at the end of the week"]) == sum(
        sub.status == "active" for sub in subs
    )

    # emails sent per week, by series and by newsletter
    rows = table(doc, "sent-table")
    assert list(rows[0]) == [
        "Week of",
        "Series: Leg health",
        "Newsletter: 2026-06-travel",  # not in campaigns.toml: shown by its key
        "Total",
    ]
    sent = Counter((week_of(d.sent_at), d.campaign_key) for d in deliveries if d.status == "sent")
    for i, row in enumerate(rows):
        assert int(row["Series: Leg health"]) == sent[(i, "leg-health")]
        assert int(row["Newsletter: 2026-06-travel"]) == sent[(i, NEWSLETTER)]
    assert [int(r["Total"]) for r in rows] == [0, 7, 4, 3, 3]

    # unsubscribes: each one counts for the last email sent to that person before it
    def last_email(email: str) -> tuple[str, str]:
        sub = by_email[email]
        before = [
            d
            for d in deliveries
            if d.subscriber_id == sub.id and d.status == "sent" and d.sent_at < sub.unsubscribed_at
        ]
        last = max(before, key=lambda d: d.sent_at)
        return last.campaign_key, last.step_key

    assert last_email("eve@example.org") == ("leg-health", "welcome")
    assert last_email("ben@example.org") == ("leg-health", "causes")
    assert last_email("cat@example.org") == ("leg-health", "home-relief")
    assert last_email("fay@example.org") == (NEWSLETTER, "2026-06-travel")
    rows = {r["Email"]: r for r in table(doc, "unsubscribes-table")}
    expected = {
        "Leg health, email 1: welcome": ("welcome", 1),
        "Leg health, email 2: causes": ("causes", 1),
        "Leg health, email 4: home-relief": ("home-relief", 1),
        "Newsletter: 2026-06-travel": ("2026-06-travel", 1),
    }
    assert set(rows) == set(expected)
    for label, (step, unsubscribed) in expected.items():
        sent_count = sum(1 for d in deliveries if d.step_key == step and d.status == "sent")
        assert int(rows[label]["Sent"]) == sent_count
        assert int(rows[label]["Unsubscribes after it"]) == unsubscribed
        assert rows[label]["Per 1,000 sent"] == f"{1000 * unsubscribed / sent_count:,.1f}"
    assert rows["Leg health, email 1: welcome"]["Per 1,000 sent"] == "166.7"  # 1 of 6
    assert rows["Newsletter: 2026-06-travel"]["Per 1,000 sent"] == "500.0"  # 1 of 2
    assert rows["Leg health, email 1: welcome"]["Subject"] == "Welcome, here is what to expect"

    # failures and bounces: bob's welcome was refused at RCPT in week 1
    rows = table(doc, "failures-table")
    assert [int(r["Bounced"]) for r in rows] == [0, 1, 0, 0, 0]
    assert sum(int(r["Failed (other reasons)"]) + int(r["In doubt"]) for r in rows) == 0
    # bounce and complaint rates: the same numbers as drip/rates.py (and `drip stats`)
    rows = {r["Email"]: r for r in table(doc, "rates-table")}
    welcome = rates["leg-health/welcome"]
    assert (welcome.sent, welcome.bounced, welcome.complained) == (6, 1, 1)
    row = rows["Leg health, email 1: welcome"]
    assert int(row["Sent"]) == welcome.sent and int(row["Bounced"]) == welcome.bounced
    assert row["Bounce rate"] == f"{welcome.bounce_rate:.2%}" == "14.29%"
    assert row["Complaint rate"] == f"{welcome.complaint_rate:.2%}" == "16.67%"
    assert "Leg health, email 3: walking" not in rows  # skipped for everyone: no row
    assert "Complaints for Leg health, email 1: welcome are 16.67%" in html

    headlines = {
        li.xpath("./span[@class='label']")[0].text: li.xpath("./span[@class='value']")[0].text
        for li in doc.xpath("//ul[@class='headlines']/li")
    }
    assert headlines["Active subscribers"] == "1"
    assert headlines["Emails sent"] == str(sum(1 for d in deliveries if d.status == "sent"))
    assert headlines["Unsubscribes"] == "4"


def test_the_report_is_self_contained_and_accessible(story: Story, tmp_path):
    project = story.project
    html, doc = report(project, tmp_path, "--since", "2026-05-27")
    assert html.startswith("<!DOCTYPE html>")
    # nothing runs, nothing loads from anywhere
    assert not doc.xpath("//script|//iframe|//object|//embed|//link|//img")
    assert "<script" not in html.lower()
    assert not [a for el in doc.iter() for a in el.attrib if a.lower().startswith("on")]
    urls = [v for el in doc.iter() for k, v in el.attrib.items() if k in ("src", "href")]
    assert urls == []
    assert not re.search(r"@import|url\(", html)
    # every chart: an accessible name and description, and a table with the numbers
    charts = doc.xpath("//svg[@role='img']")
    assert len(charts) == 5
    for svg in charts:
        title_id, desc_id = svg.get("aria-labelledby").split()
        assert doc.get_element_by_id(title_id).tag == "title"
        assert doc.get_element_by_id(desc_id).text_content().strip()
        section = svg.getparent()
        assert section.xpath(".//details/table")
    # a bar's hover title repeats its number
    titles = [t.text for t in doc.xpath("//section[@id='sent']//rect/title")]
    assert "Jun 1: Series: Leg health, 7" in titles
    # no personal data in a report meant to be emailed around
    assert "@example.org" not in html
    footer = doc.xpath("//footer")[0].text_content()
    assert "No opens and no clicks" in footer and "tracking pixel" in footer


def test_empty_database_and_bad_input(project: Project, tmp_path):
    out = tmp_path / "empty.html"
    result = project.run("report", "-o", str(out), "--now", NOW)
    assert result.returncode == 0, result.stderr
    doc = lxml.html.document_fromstring(out.read_text())
    assert len(table(doc, "signups-table")) == 12  # the default: 12 weeks
    assert "Nothing in this period" in out.read_text()

    result = project.run("report", "-o", str(out), "--since", "June 1")
    assert result.returncode == 1
    assert result.stderr.strip() == "drip: --since 'June 1' is not a date like 2026-03-01"
    result = project.run("report", "-o", str(tmp_path / "no" / "such" / "dir.html"))
    assert result.returncode == 1
    assert result.stderr.startswith("drip: cannot write ") and "Traceback" not in result.stderr


def test_stats_json_and_the_report_agree(story: Story, tmp_path):
    """The report's period covers everything here, so its rates equal `drip stats`'."""
    project = story.project
    _, doc = report(project, tmp_path, "--weeks", "5")
    stats = json.loads(project.run("stats", "--json").stdout)["rates"]
    foot = doc.xpath("//table[@id='rates-table']/tfoot/tr/*")
    cells = [c.text_content().strip() for c in foot]
    assert cells[0] == "All email"
    assert int(cells[1]) == stats["all"]["sent"]
    assert int(cells[2]) == stats["all"]["bounced"]
    assert cells[3] == f"{stats['all']['bounce_rate']:.2%}"
    assert int(cells[4]) == stats["all"]["complained"]


def test_the_report_opens_in_chromium_without_loading_anything(story: Story, tmp_path):
    """Real headless Chromium: the page asks for nothing but itself, runs no script,
    and every chart is drawn (a visible SVG with shapes)."""
    import os
    import shutil

    chromium = "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None  # type: ignore[assignment]
    if sync_playwright is None or not (Path(chromium).exists() or shutil.which("chromium")):
        if os.environ.get("DRIP_REQUIRE_BROWSER") == "1":
            pytest.fail("DRIP_REQUIRE_BROWSER=1 but Playwright or Chromium is missing")
        pytest.skip("Playwright with Debian's chromium is needed")
    report(story.project, tmp_path, "--weeks", "5")
    url = (tmp_path / "report.html").as_uri()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        requests: list[str] = []
        errors: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url)
        assert requests == [url]
        assert errors == []
        assert page.evaluate("document.scripts.length") == 0
        for chart in page.locator("svg.chart").all():
            box = chart.bounding_box()
            assert box is not None and box["width"] > 600 and box["height"] > 100
        # one rect per week and source with sends: 3 weeks of the series, then series
        # and newsletter in the last week
        assert page.locator("#sent svg.chart rect").count() == 5
        browser.close()
