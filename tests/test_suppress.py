"""drip suppress (list, add, remove) and the rates in drip stats."""

from __future__ import annotations

import json

from deliver_helpers import LATER, WED_10, audit, refs, sample, send_to, status, write_mbox


def test_add_list_remove_with_warning_and_audit(project, sink):
    send_to(project, "pat@example.org")
    added = project.cli("suppress", "add", "Pat@Example.org", "--reason", "asked by phone")
    assert added.exit_code == 0 and "suppressed Pat@Example.org" in added.output
    assert "already suppressed" in project.cli("suppress", "add", "pat@example.org").output
    project.cli("suppress", "add", "nobody@example.net")
    listed = project.cli("suppress", "list").output
    assert "pat@example.org\tasked by phone" in listed and "nobody@example.net" not in listed
    assert "sha256:" in listed and "2 suppressed" in listed  # no subscriber has that address

    sink.handler.received.clear()
    project.cli("send", "--now", WED_10)
    assert sink.received == []  # suppressed: the next step does not go

    removed = project.cli("suppress", "remove", "pat@example.org")
    assert removed.exit_code == 0
    assert "warning: removed pat@example.org from the suppression list" in removed.output
    assert "drip may email this address again" in removed.output
    assert ("suppression.removed", {"reason": "asked by phone", "status": "active"}) in audit(
        project
    )
    missing = project.cli("suppress", "remove", "pat@example.org")
    assert missing.exit_code == 1 and "is not on the suppression list" in missing.output
    bad = project.cli("suppress", "add", "not an address")
    assert bad.exit_code == 1 and "not valid" in bad.output and "Traceback" not in bad.output


def test_removing_a_mistaken_bounce_restores_the_subscriber(project, sink, tmp_path):
    send_to(project, "pat@example.org")
    ref = refs(project, "pat@example.org")[0]
    project.cli(
        "bounces", "process", str(write_mbox(tmp_path / "b", [sample("dsn_hard.eml", ref)]))
    )
    assert status(project, "pat@example.org") == "bounced"
    removed = project.cli("suppress", "remove", "pat@example.org")
    assert "the subscriber is active again" in removed.output
    assert status(project, "pat@example.org") == "active"
    sink.handler.received.clear()
    project.cli("send", "--now", WED_10)
    assert [m.recipient for m in sink.received] == ["pat@example.org"]


def test_a_complainer_stays_unsubscribed_after_removal(project, tmp_path):
    send_to(project, "pat@example.org")
    ref = refs(project, "pat@example.org")[0]
    box = write_mbox(tmp_path / "c", [sample("arf_complaint.eml", ref)])
    project.cli("bounces", "process", str(box))
    removed = project.cli("suppress", "remove", "pat@example.org")
    assert "the subscriber stays complained" in removed.output
    assert status(project, "pat@example.org") == "complained"


def test_stats_show_rates_and_warn_over_a_tenth_of_a_percent(project, sink, tmp_path):
    addresses = [f"p{i}@example.org" for i in range(4)]
    sink.handler.by_recipient["p3@example.org"] = "reject"  # refused at RCPT: a bounce too
    send_to(project, *addresses)
    box = write_mbox(
        tmp_path / "r",
        [
            sample("dsn_hard.eml", refs(project, "p0@example.org")[0], "p0@example.org"),
            sample("arf_complaint.eml", refs(project, "p1@example.org")[0]),
        ],
    )
    project.cli("bounces", "process", str(box), "--now", LATER)
    result = project.cli("stats")
    rows = [ln for ln in result.output.splitlines() if ln.startswith("leg-health/welcome ")]
    row = rows[-1]  # the second table: bounces and complaints
    assert row.split()[-5:] == ["3", "2", "50.00%", "1", "33.33%"], row
    assert "warning: complaints for leg-health/welcome are 33.33% of emails sent" in result.output
    data = json.loads(project.cli("stats", "--json").output)
    assert data["rates"]["leg-health/welcome"] == {
        "sent": 3,
        "bounced": 2,
        "complained": 1,
        "bounce_rate": 0.5,
        "complaint_rate": 0.333333,
    }
