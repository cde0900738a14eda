"""The states a subscriber, an enrollment and a delivery can be in.

One enum each, so a subscriber's "active" and an enrollment's "active" are
different things to the type checker. The values are what the database stores
(no migration): the columns stay plain strings, read back as these enums
(models.StateColumn). No SQLAlchemy here: the CLI builds its options from these
enums without loading the database layer.
"""

from __future__ import annotations

from enum import StrEnum


class SubscriberStatus(StrEnum):
    PENDING = "pending"  # signed up, has not confirmed yet
    ACTIVE = "active"  # confirmed: gets the campaigns their answers match
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"  # the address does not take mail
    COMPLAINED = "complained"  # marked an email as spam


class EnrollmentState(StrEnum):
    ACTIVE = "active"  # a next step is planned (next_step_key, next_due_at)
    FINISHED = "finished"  # every step is recorded
    LEFT = "left"  # the audience rule no longer matches; re-entering resumes
    HELD = "held"  # a step is claimed or in doubt: nothing more until it is resolved
    # the subscriber stopped this one campaign on the preferences page: sticky,
    # no audience re-evaluation or replan ever re-enrolls them (only they can rejoin)
    OPTED_OUT = "opted_out"


class DeliveryStatus(StrEnum):
    CLAIMED = "claimed"  # a run is sending it now
    SENT = "sent"
    SKIPPED = "skipped"  # its `when` rule did not match, or it was added behind the subscriber
    DEFERRED = "deferred"  # a temporary failure: retried at next_attempt_at
    FAILED = "failed"
    IN_DOUBT = "in_doubt"  # the run died mid-send: it may or may not have arrived


class Resolution(StrEnum):
    """What an operator says of an in-doubt delivery (drip/deliveries.py)."""

    SENT = "sent"  # it did arrive: record it as sent, the campaign moves on
    RESEND = "resend"  # it did not: forget the attempt, the next run sends it again


# A step waiting on one of these blocks the rest of the campaign for that subscriber.
BLOCKING = frozenset({DeliveryStatus.CLAIMED, DeliveryStatus.IN_DOUBT})
