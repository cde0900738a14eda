"""The mail worker: sends what the web requests queued, off the request threads.

A request commits its change (and any queued email), then calls notify(); the
worker thread wakes at once and sends. It also polls every few seconds, so
emails queued by another process, or left waiting by a relay outage or the
hourly cap, still go. `drip serve` and `drip run` start one; `drip send` drains
the same queue (mailqueue.deliver_queued).

notify(subscriber_id) also asks for a Sender run for that subscriber: the
urgent email after a confirmation, or after new warning signs on the
preferences page. Those are ordinary deliveries whose enrollment row is already
committed and due, so they are durable: if this process dies first, the next
`drip send` or scheduled run sends them, exactly once as always.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .. import mailqueue
from ..transport import DeliveryError
from . import jobs, mailer

if TYPE_CHECKING:  # for types only: services imports the worker at run time
    from .services import Services

log = logging.getLogger("drip.web")


class MailWorker:
    def __init__(self, services: Services, poll_seconds: float = 5.0):
        self.services = services
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._subscribers: set[int] = set()
        self._thread: threading.Thread | None = None

    def notify(self, subscriber_id: int | None = None) -> None:
        """Something was queued (and, with an id, that subscriber has mail due now)."""
        if subscriber_id is not None:
            with self._lock:
                self._subscribers.add(subscriber_id)
        self._wake.set()

    def run_once(self) -> mailqueue.QueueCounts | None:
        """Urgent Sender runs first, then the transactional queue. Never raises."""
        svc = self.services
        with self._lock:
            due, self._subscribers = self._subscribers, set()
        for sub_id in sorted(due):
            try:
                summary = jobs.send_due(
                    svc, only_subscriber=sub_id, wait=svc.options.send_lock_wait
                )
            except Exception:
                log.exception("urgent send for subscriber %s failed; the next run retries", sub_id)
                summary = None
            if summary is None:  # busy lock or no transport: try again on the next poll
                with self._lock:
                    self._subscribers.add(sub_id)
        try:
            transport = svc.transport()
        except (DeliveryError, ValueError) as exc:
            log.error("cannot send queued emails: %s", exc)
            return None
        try:
            counts = mailqueue.deliver_queued(
                svc.engine,
                transport,
                svc.clock,
                limits=svc.options.mail_limits,
                actor=svc.actor,
                render=mailer.render_queued(svc),
            )
        except Exception:
            log.exception("sending queued emails failed; the next poll retries")
            return None
        finally:
            transport.close()
        if counts.sent or counts.failed or counts.stopped or counts.in_doubt_new:
            log.info("queued emails: %s", counts.line())
        return counts

    def start(self) -> MailWorker:
        self._thread = threading.Thread(target=self._loop, name="drip-mail", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.run_once()
            except Exception:  # the worker must outlive any one bad run
                log.exception("mail worker run failed")
