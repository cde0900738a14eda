"""Running the Sender from the web process: after a confirmation, and every minute.

Both hold locking.SendLock like `drip send` does, so the web process, `drip run`'s
scheduler and a cron `drip send` never send at the same time (the Sender's crash
recovery depends on that). If the lock is busy the run is skipped: whoever holds
it, or the next run, sends what is due.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from .. import rights
from ..locking import LockBusy, SendLock
from ..sender import Sender, Summary
from ..transport import DeliveryError

if TYPE_CHECKING:  # for types only: services imports the worker at run time
    from .services import Services

log = logging.getLogger("drip.web")


def send_due(
    services: Services, *, only_subscriber: int | None = None, wait: float = 0.0
) -> Summary | None:
    """One `drip send` run (or for one subscriber). None when another run holds the lock."""
    try:
        with SendLock(services.engine, wait=wait) as lock:
            try:
                transport = services.transport()
            except (DeliveryError, ValueError) as exc:
                log.error("cannot send: %s", exc)
                return None
            try:
                sender = Sender(
                    services.config,
                    services.engine,
                    transport,
                    services.tokens,
                    clock=services.clock,
                    renderer=services.renderer,  # compiled once for the process's life
                    actor=services.actor,
                    sign=services.sign,
                    run_id=lock.run_id,
                )
                summary = sender.run(only_subscriber=only_subscriber)
            finally:
                transport.close()  # whoever creates a transport closes it
    except LockBusy:
        log.info("another drip send is running; it or the next run sends what is due")
        return None
    if summary.sent or summary.failed or summary.stopped:
        log.info("drip send: %s", summary.line())
    return summary


def scheduled_run(services: Services) -> None:
    """The `drip run` job: take up an edit of campaigns.toml, purge expired signups, then
    send what is due. Never raises."""
    try:
        services.refresh_config(force=True)  # never a run from a version already replaced
        purge(services)
        send_due(services)
    except Exception:  # a scheduler job must not die; the next minute tries again
        log.exception("scheduled send failed")


def purge(services: Services) -> tuple[int, int]:
    with Session(services.engine) as session:
        counts = rights.purge_pending(session, services.now(), services.options.pending_ttl)
        # [privacy] keep_after_unsubscribe: answers and names of people who left
        retired = rights.purge_expired(session, services.config, services.now(), services.actor)
        session.commit()
    if retired:
        log.info("purged the answers and names of %d people who left", retired)
    if any(counts):
        log.info("%s", rights.purged_line(*counts))
    return counts
