"""drip bounces process: returned mail from mbox and Maildir, decided and audited."""

from __future__ import annotations

import json

from deliver_helpers import (
    LATER,
    MON2_10,
    MON_10,
    WED_10,
    audit,
    refs,
    sample,
    send_to,
    status,
    write_maildir,
    write_mbox,
)


def process(project, path, now=LATER):  # type: ignore[no-untyped-def]
    return project.cli("bounces", "process", str(path), "--now", now)


def test_hard_bounce_suppresses_is_audited_and_a_rerun_changes_nothing(project, sink, tmp_path):
    send_to(project, "pat@example.org", "ann@example.org")
    ref = refs(project, "pat@example.org")[0]
    box = write_mbox(tmp_path / "bounces.mbox", [sample("dsn_hard.eml", ref)])

    result = process(project, box)
    assert result.exit_code == 0, result.output
    assert f"{box}:1: hard bounce 5.1.1 for pat@example.org (leg-health/welcome): suppressed" in (
        result.output
    )
    assert status(project, "pat@example.org") == "bounced"
    assert status(project, "ann@example.org") == "active"
    assert "pat@example.org\thard-bounce" in project.cli("suppress", "list").output
    actions = [a for a, _ in audit(project)]
    assert actions.count("bounce.hard") == 1 and actions.count("subscriber.bounced") == 1
    hard = next(d for a, d in audit(project) if a == "bounce.hard")
    assert hard["ref"] == ref and hard["matched_by"] == "ref" and hard["status"] == "5.1.1"

    again = process(project, box)
    assert "already processed" in again.output and "1 duplicate" in again.output
    assert [a for a, _ in audit(project)] == actions

    # the next step goes to Ann only
    sink.handler.received.clear()
    project.cli("send", "--now", WED_10)
    assert [m.recipient for m in sink.received] == ["ann@example.org"]


def test_soft_bounces_in_a_row_become_a_bounce_and_a_good_delivery_resets_them(
    project, sink, tmp_path
):
    project.edit_config('min_gap = "12h"', 'min_gap = "12h"\nsoft_bounce_limit = 2')
    send_to(project, "pat@example.org", "ann@example.org")
    project.cli("send", "--now", WED_10)
    project.cli("send", "--now", MON2_10)
    pat, ann = refs(project, "pat@example.org"), refs(project, "ann@example.org")
    assert len(pat) == len(ann) == 3

    # Ann: soft, then a delivery that went through, then soft: never two in a row
    out = process(project, write_mbox(tmp_path / "a.mbox", [sample("dsn_soft.eml", ann[0])]))
    assert "soft bounce 4.4.7 for ann@example.org (leg-health/welcome): 1 of 2" in out.output
    out = process(project, write_mbox(tmp_path / "b.mbox", [sample("dsn_soft.eml", ann[2])]))
    assert "1 of 2" in out.output
    assert status(project, "ann@example.org") == "active"

    # Pat: two deliveries in a row come back soft: bounced and suppressed
    box = write_mbox(
        tmp_path / "c.mbox", [sample("dsn_soft.eml", pat[0]), sample("dsn_soft.eml", pat[1])]
    )
    out = process(project, box)
    assert "1 of 2" in out.output
    assert "2 in a row, now treated as bounced and suppressed" in out.output
    assert status(project, "pat@example.org") == "bounced"
    assert "pat@example.org\tsoft-bounce-limit" in project.cli("suppress", "list").output


def test_delayed_and_policy_reports_keep_the_patient_and_warn(project, tmp_path):
    send_to(project, "pat@example.org")
    ref = refs(project, "pat@example.org")[0]
    box = write_mbox(
        tmp_path / "b.mbox", [sample("dsn_delayed.eml", ref), sample("dsn_policy.eml", ref)]
    )
    result = process(project, box)
    assert result.exit_code == 0
    assert "delayed 4.4.1 for pat@example.org (leg-health/welcome): the relay keeps trying" in (
        result.output
    )
    assert "warning: " in result.output and "policy rejection 5.7.26" in result.output
    assert "kept subscribed" in result.output
    assert status(project, "pat@example.org") == "active"
    assert "0 suppressed" in project.cli("suppress", "list").output
    details = {a: d for a, d in audit(project)}
    assert details["bounce.delayed"]["matched_by"] == "ref"  # through the VERP address only
    assert details["bounce.policy"]["status"] == "5.7.26"


def test_complaint_unsubscribes_suppresses_and_stops_every_email(project, sink, tmp_path):
    send_to(project, "pat@example.org")
    ref = refs(project, "pat@example.org")[0]
    result = process(project, write_maildir(tmp_path / "fbl", [sample("arf_complaint.eml", ref)]))
    assert "complaint from pat@example.org (leg-health/welcome): unsubscribed and suppressed" in (
        result.output
    )
    assert status(project, "pat@example.org") == "complained"
    assert "pat@example.org\tcomplaint" in project.cli("suppress", "list").output
    assert "subscriber.complained" in [a for a, _ in audit(project)]
    sink.handler.received.clear()
    project.cli("send", "--now", WED_10)
    assert sink.received == []


def test_nothing_in_a_report_resubscribes_anybody(project, tmp_path):
    send_to(project, "pat@example.org")
    ref = refs(project, "pat@example.org")[0]
    process(project, write_mbox(tmp_path / "1.mbox", [sample("arf_complaint.eml", ref)]))
    later = [sample(n, ref) for n in ("dsn_hard.eml", "dsn_soft.eml", "dsn_delayed.eml")]
    process(project, write_mbox(tmp_path / "2.mbox", later))
    assert status(project, "pat@example.org") == "complained"  # not bounced, never active


def test_the_answers_of_a_complainer_are_purged_like_an_unsubscriber_s(project, tmp_path):
    # a spam report is an unsubscribe: [privacy] keep_after_unsubscribe applies to it
    send_to(project, "pat@example.org", "ann@example.org")
    ref = refs(project, "pat@example.org")[0]
    process(project, write_mbox(tmp_path / "1.mbox", [sample("arf_complaint.eml", ref)]))
    assert status(project, "pat@example.org") == "complained"
    project.cli("send", "--now", "2026-06-20T12:00:00Z")  # 15 days: within the 30
    assert "night_cramps" in project.cli("subscribers", "export", "pat@example.org").output
    result = project.cli("send", "--now", "2026-07-06T12:00:00Z")  # 31 days after
    assert "purged the answers and names of 1 people" in result.output
    data = json.loads(project.cli("subscribers", "export", "pat@example.org").output)
    assert data["answers"] == [] and data["profile"]["first_name"] is None
    assert data["profile"]["status"] == "complained" and data["consent"]["withdrawn_at"]
    kept = json.loads(project.cli("subscribers", "export", "ann@example.org").output)
    assert kept["answers"] != []  # still subscribed: nothing purged


def test_unmatched_malformed_and_ordinary_mail_get_one_line_each(project, tmp_path):
    send_to(project, "pat@example.org")
    names = [
        "dsn_unmatched.eml",
        "malformed_report.eml",
        "malformed_status.eml",
        "autoreply.eml",
    ]
    box = write_mbox(tmp_path / "odd.mbox", [sample(n) for n in names] + [b"\x00\xff garbage"])
    result = process(project, box)
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith(str(box))]
    assert len(lines) == 5, result.output
    assert "no subscriber or delivery matches" in lines[0]
    assert "malformed report: a delivery report without its message/delivery-status" in lines[1]
    assert "malformed report: Status 'permanent failure' is not a code like 5.1.1" in lines[2]
    assert "skipped: not a bounce or complaint report" in lines[3]
    assert "not an email message" in lines[4]
    assert "Traceback" not in result.output
    assert status(project, "pat@example.org") == "active"
    assert "bounce.unmatched" in [a for a, _ in audit(project)]


def test_other_bounce_formats_through_flufl_bounce_from_a_maildir(project, tmp_path):
    send_to(project, "pat@example.org")
    ref = refs(project, "pat@example.org")[0]
    folder = write_maildir(tmp_path / "Maildir", [sample("qmail_hard.eml", ref)])
    result = process(project, folder)
    assert "hard bounce 5.1.1 for pat@example.org (leg-health/welcome)" in result.output
    assert status(project, "pat@example.org") == "bounced"


def test_matching_by_address_when_the_report_carries_no_ref(project, tmp_path):
    send_to(project, "pat@example.org")
    raw = sample("dsn_unmatched.eml").replace(b"stranger@example.net", b"pat@example.org")
    result = process(project, write_mbox(tmp_path / "a.mbox", [raw]))
    assert "hard bounce 5.1.1 for pat@example.org: suppressed" in result.output
    details = {a: d for a, d in audit(project)}
    assert details["bounce.hard"]["matched_by"] == "address"


def test_a_path_on_the_command_line_wins_over_drip_imap_url(project, sink, tmp_path):
    # the README's cron line reads an mbox; DRIP_IMAP_URL set for other runs must not
    # turn it into "one of them" (it did: exit 1, nothing read)
    send_to(project, "pat@example.org")
    box = write_mbox(
        tmp_path / "b.mbox", [sample("dsn_hard.eml", refs(project, "pat@example.org")[0])]
    )
    project.env["DRIP_IMAP_URL"] = "imaps://bounces:secret@127.0.0.1:1/INBOX"
    result = process(project, box)
    assert result.exit_code == 0, result.output
    assert "hard bounce 5.1.1 for pat@example.org" in result.output
    assert status(project, "pat@example.org") == "bounced"
    # without a PATH the variable is what is read (a refused connection: one clear line)
    alone = project.cli("bounces", "process", "--now", LATER)
    assert alone.exit_code == 1 and "127.0.0.1" in alone.output and "Traceback" not in alone.output
    # both on the command line: which one was meant is unclear
    both = project.cli("bounces", "process", str(box), "--imap", "imaps://x@127.0.0.1:1/INBOX")
    assert both.exit_code == 1 and "one of them" in both.output


def test_bad_sources_are_one_clear_line(project, tmp_path):
    missing = project.cli("bounces", "process", str(tmp_path / "nope"))
    assert missing.exit_code == 1 and "no such file or folder" in missing.output
    (tmp_path / "notes.txt").write_text("hello\n")
    not_mbox = project.cli("bounces", "process", str(tmp_path / "notes.txt"))
    assert not_mbox.exit_code == 1 and "is not an mbox file" in not_mbox.output
    (tmp_path / "folder").mkdir()
    not_maildir = project.cli("bounces", "process", str(tmp_path / "folder"))
    assert "is a folder but not a Maildir" in not_maildir.output
    neither = project.cli("bounces", "process")
    assert neither.exit_code == 1 and "--imap URL" in neither.output
    bad_url = project.cli("bounces", "process", "--imap", "http://x")
    assert "must be an imap:// or imaps:// URL" in bad_url.output
    for result in (missing, not_mbox, not_maildir, neither, bad_url):
        assert "Traceback" not in result.output


def test_bounces_process_as_a_real_process(project, tmp_path):
    send_to(project, "pat@example.org")
    ref = refs(project, "pat@example.org")[0]
    box = write_mbox(tmp_path / "b.mbox", [sample("dsn_hard.eml", ref)])
    done = project.run("bounces", "process", str(box), "--quiet", "--now", MON_10)
    assert done.returncode == 0, done.stderr
    assert "drip bounces: 1 bounced" in done.stdout
    assert status(project, "pat@example.org") == "bounced"


def test_verp_return_path_from_the_clinic_bounce_address(project):
    from drip.config import load_config
    from drip.message import return_path

    ref = "cd" * 16
    assert return_path(load_config(project.config).clinic, ref) == "care@clinic.test"
    project.edit_config('min_gap = "12h"', 'min_gap = "12h"\nbounce_address = "bounce@clinic.test"')
    assert return_path(load_config(project.config).clinic, ref) == f"bounce+{ref}@clinic.test"
    project.edit_config('"bounce@clinic.test"', '"Bounces <b+x@clinic.test>"')
    result = project.cli("check", "-q")
    assert result.exit_code == 1
    assert "clinic.bounce_address: 'Bounces <b+x@clinic.test>' must be a plain address" in (
        result.output
    )
