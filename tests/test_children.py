"""A big run's sending child killed mid-run (postman.ProcessPostman, drip/courier.py),
with the real `drip send` against a real SMTP server and a real SQLite file: the
parent stops the run with one clear line and a non-zero exit, never hangs, leaves no
claim behind, and a second run sends every email exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import summary
from test_concurrency import NOW, seed, statuses

from drip.postman import SENDING_CHILDREN
from drip.sender import IN_FLIGHT_PER_CONNECTION

pytestmark = pytest.mark.slow

CONNECTIONS = 2


def child(pid: int) -> int:
    """One of the sending children of `drip send` (each builds and sends its share)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            found = [int(child) for child in listing.read().split()]
        if len(found) == min(SENDING_CHILDREN, CONNECTIONS):
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"drip send {pid} did not fork its sending children")


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("drip send hung after its child died") from None


def check_rerun(project, sink, addresses: list[str], interrupted: bool = False) -> Counter[str]:
    """No claim is left (after Ctrl-C: as with threads, the next run marks them in
    doubt); a second run sends the rest, nobody gets an email twice."""
    found = statuses(project)
    if not interrupted:
        assert found["claimed"] == 0, found
    assert found["in_doubt"] + found["claimed"] <= IN_FLIGHT_PER_CONNECTION * CONNECTIONS, found
    sink.handler.delay = 0
    again = project.run("send", "--now", NOW)
    assert again.returncode == 0, again.stdout + again.stderr
    per_recipient = Counter(m.recipient for m in sink.received)
    assert max(per_recipient.values()) == 1, "an email was sent twice"
    final = statuses(project)
    assert final["sent"] + final["in_doubt"] == len(addresses), final
    # whoever got nothing is in doubt (their email may be at the relay)
    assert len(set(addresses) - set(per_recipient)) <= final["in_doubt"], final
    return final


def test_a_killed_child_stops_the_run_with_one_clear_line(any_project, sink):
    project = any_project
    addresses = seed(project, 200)
    sink.handler.delay = 0.05  # a slow relay: messages are in flight when the kill lands
    project.env["DRIP_SMTP_URL"] = sink.url + f"&connections={CONNECTIONS}"
    proc = project.popen("send", "--now", NOW)
    sending = child(proc.pid)
    reached = len(sink.handler.wait_for(20, timeout=60))
    os.kill(sending, signal.SIGKILL)
    out, err = finish(proc)
    assert proc.returncode == 2, (out, err)
    assert "Traceback" not in err and "Broken pipe" not in err and "Aborted" not in err, err
    assert "the sending process ended" in out, out
    # what the relay had taken before the kill is recorded sent, but for the replies
    # still on their way to the child: at most one a connection (one message each)
    assert summary(out)["sent"] >= reached - CONNECTIONS
    check_rerun(project, sink, addresses)


def test_a_child_that_stops_answering_then_dies_does_not_hang_the_run(project, sink):
    """The child stops (SIGSTOP) while the parent has released messages and waits for
    their outcomes; then it dies: the parent stops the run, those are in doubt."""
    addresses = seed(project, 200)
    sink.handler.delay = 0.02
    project.env["DRIP_SMTP_URL"] = sink.url + f"&connections={CONNECTIONS}"
    proc = project.popen("send", "--now", NOW)
    sending = child(proc.pid)
    sink.handler.wait_for(10, timeout=60)
    os.kill(sending, signal.SIGSTOP)
    time.sleep(1.5)  # the parent waits for outcomes that do not come
    os.kill(sending, signal.SIGKILL)
    out, err = finish(proc)
    assert proc.returncode == 2, (out, err)
    assert "the sending process ended" in out and "Traceback" not in err, (out, err)
    found = statuses(project)
    assert found["failed"] == 0, found
    check_rerun(project, sink, addresses)


def test_ctrl_c_on_a_big_run_is_no_traceback_from_the_children(project, sink):
    """Ctrl-C at a terminal reaches the whole process group: the children leave it to
    the parent (which stops as a small run does), so no child prints a traceback."""
    addresses = seed(project, 200)
    sink.handler.delay = 0.05
    project.env["DRIP_SMTP_URL"] = sink.url + f"&connections={CONNECTIONS}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "drip", "send", "--now", NOW],
        env=project.full_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as at a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    child(proc.pid)
    sink.handler.wait_for(20, timeout=60)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = finish(proc)
    assert proc.returncode != 0, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    time.sleep(0.3)  # what was released still went out
    final = check_rerun(project, sink, addresses, interrupted=True)
    assert final["in_doubt"] > 0, final  # claimed, unrecorded: never resent silently
