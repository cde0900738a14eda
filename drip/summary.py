"""What a `drip send` run did, and the one line cron mails to the operator."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Summary:
    sent: int = 0
    skipped: int = 0
    deferred: int = 0
    failed: int = 0
    bounced: int = 0
    errors: int = 0  # of the failed: drip could not build or send the message itself
    in_doubt_new: int = 0
    in_doubt_total: int = 0
    replanned: int = 0
    stopped: str | None = None  # why the run stopped early, if it did
    limit_reached: bool = False
    planned: list[str] = field(default_factory=list)  # dry run: what would go

    def line(self, dry_run: bool = False) -> str:
        verb = "would send" if dry_run else "sent"
        text = (
            f"{self.sent} {verb}, {self.skipped} skipped, {self.deferred} deferred, "
            f"{self.failed} failed"
        )
        extra = [f"{self.bounced} bounced"] if self.bounced else []
        if self.errors:
            extra.append(f"{self.errors} by an error in drip or a template")
        if extra:
            text += f" ({', '.join(extra)})"
        if self.in_doubt_total:
            text += (
                f"; {self.in_doubt_total} in doubt ({self.in_doubt_new} new), "
                "see `drip deliveries --in-doubt`"
            )
        if self.stopped:
            text += f"; stopped early: {self.stopped}"
        return text
