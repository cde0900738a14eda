"""Re-plan every active subscriber after a campaigns.toml edit, in a few SQL statements.

The same rules as enrollment.sync_subscriber + schedule.plan_next, one subscriber
at a time there, set-based here (a test compares the two on random campaigns):

1. audience: leave the campaigns whose rule no longer matches, join the new ones,
   rejoin the ones left earlier (never a campaign the patient stopped themselves);
2. position: the furthest step of the current file with a delivery row;
3. next step and due time from that row and the new delays (plan_next's rules);
4. send windows: a small table of each window's openings in every time zone in
   use, built in Python (zoneinfo) for the dates needed, looked up per row;
5. steps inserted behind a subscriber's position are recorded as skipped.

The work is one pass over the enrollments whatever the edit: seconds for a
million subscribers, where the per-subscriber loop took minutes.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from .config import ALWAYS, Config, SendWindow
from .models import ACTIVE, ENROLLED, FINISHED, HELD, LEFT, UTCDateTime
from .schedule import CLAIMED, DEFERRED, IN_DOUBT, SENT, SKIPPED

OPTED_OUT = "opted_out"  # enrollment.OPTED_OUT (not imported: enrollment imports us)
INSERTED_REASON = "step added before this subscriber's position"

_temp = MetaData()
STEPS = Table(
    "drip_rp_steps",
    _temp,
    Column("campaign_key", String(64)),
    Column("step_key", String(64)),
    Column("pos", Integer),
    Column("due_s", Integer),  # the delays of steps 0..pos, in seconds
    Column("gap_s", Integer),  # min(clinic.min_gap, this step's delay), after a sent step
    Column("window_id", Integer),  # 0: any time (no lookup)
    prefixes=["TEMPORARY"],
)
WINDOWS = Table(
    "drip_rp_windows",
    _temp,
    Column("zone", String(64)),
    Column("window_id", Integer),
    Column("open_at", UTCDateTime()),
    Column("close_at", UTCDateTime()),
    prefixes=["TEMPORARY"],
)


def can_replan_in_sql(session: Session, config: Config) -> bool:
    """Whole-second delays on SQLite or PostgreSQL (always so for a loaded campaigns.toml)."""
    if session.get_bind().dialect.name not in ("sqlite", "postgresql"):
        return False
    spans = [config.clinic.min_gap] + [s.delay for c in config.campaigns for s in c.steps]
    return all(span.microseconds == 0 for span in spans)


def replan_all(session: Session, config: Config, now: datetime) -> int:
    """Re-sync every active subscriber with `config`. Returns how many are active."""
    session.flush()  # the ORM's pending changes first: the statements below read them
    conn = session.connection()
    dialect = conn.dialect.name
    _drop_temp(conn)
    windows = _create_steps(conn, config)
    for campaign in config.campaigns:
        _audience(conn, campaign.key, campaign.audience, now)
    _plan(conn, dialect, config)
    _fill_windows(conn, windows)
    if dialect == "postgresql":  # temporary tables get no statistics by themselves
        for name in ("drip_rp_steps", "drip_rp_plan", "drip_rp_windows"):
            conn.execute(text(f"ANALYZE {name}"))
    _apply(conn)
    _skip_inserted(conn, dialect, now)
    _drop_temp(conn)
    session.expire_all()  # objects loaded before are stale now
    count = conn.execute(text(f"SELECT count(*) FROM subscribers WHERE status = '{ACTIVE}'"))
    return int(count.scalar() or 0)


# -- the new file, as a table ------------------------------------------------------------


def _create_steps(conn: Connection, config: Config) -> list[SendWindow]:
    """Fill drip_rp_steps; returns the send windows, window_id - 1 indexing into it."""
    STEPS.create(conn)
    conn.execute(text("CREATE INDEX drip_rp_steps_key ON drip_rp_steps (campaign_key, step_key)"))
    conn.execute(text("CREATE INDEX drip_rp_steps_pos ON drip_rp_steps (campaign_key, pos)"))
    windows: list[SendWindow] = []
    rows = []
    for campaign in config.campaigns:
        due = timedelta(0)
        for pos, step in enumerate(campaign.steps):
            due += step.delay
            window = step.send_window or config.clinic.send_window
            if _always(window):
                window_id = 0
            else:
                if window not in windows:
                    windows.append(window)
                window_id = windows.index(window) + 1
            rows.append(
                {
                    "campaign_key": campaign.key,
                    "step_key": step.key,
                    "pos": pos,
                    "due_s": int(due.total_seconds()),
                    "gap_s": int(min(config.clinic.min_gap, step.delay).total_seconds()),
                    "window_id": window_id,
                }
            )
    if rows:
        conn.execute(insert(STEPS), rows)
    return windows


def _always(window: SendWindow) -> bool:
    return (window.start_hour, window.end_hour, window.weekdays) == (
        ALWAYS.start_hour,
        ALWAYS.end_hour,
        ALWAYS.weekdays,
    )


# -- 1. audience -----------------------------------------------------------------------


def _matches(rule: Any, params: dict[str, object], tag: str) -> str:
    """SQL true when subscriber `s` matches `rule` (rules.Rule), binding keys into params."""

    def has(keys: Sequence[str], name: str) -> str:
        names = []
        for i, key in enumerate(keys):
            params[f"{tag}_{name}{i}"] = key
            names.append(f":{tag}_{name}{i}")
        return (
            "EXISTS (SELECT 1 FROM subscriber_symptoms y WHERE y.subscriber_id = s.id "
            f"AND y.key IN ({', '.join(names)}))"
        )

    clauses = ["1 = 1"]
    if rule.any:
        clauses.append(has(sorted(rule.any), "any"))
    for i, key in enumerate(sorted(rule.all)):
        clauses.append(has([key], f"all{i}_"))
    if rule.none:
        clauses.append("NOT " + has(sorted(rule.none), "none"))
    return " AND ".join(clauses)


def _audience(conn: Connection, campaign_key: str, rule: Any, now: datetime) -> None:
    params: dict[str, object] = {"c": campaign_key}
    match = _matches(rule, params, "r")
    active = f"s.id = enrollments.subscriber_id AND s.status = '{ACTIVE}'"
    if match != "1 = 1":  # leave: the rule no longer matches (history is kept)
        conn.execute(
            text(
                f"""UPDATE enrollments SET state = '{LEFT}', next_step_key = NULL,
                       next_due_at = NULL
                WHERE campaign_key = :c AND state <> '{OPTED_OUT}'
                  AND EXISTS (SELECT 1 FROM subscribers s WHERE {active} AND NOT ({match}))"""
            ),
            params,
        )
    conn.execute(  # rejoin where they left off
        text(
            f"""UPDATE enrollments SET state = '{ENROLLED}'
            WHERE campaign_key = :c AND state = '{LEFT}'
              AND EXISTS (SELECT 1 FROM subscribers s WHERE {active} AND {match})"""
        ),
        params,
    )
    conn.execute(  # join: starts now
        text(
            f"""INSERT INTO enrollments (subscriber_id, campaign_key, started_at, state)
            SELECT s.id, CAST(:c AS VARCHAR(64)), :now, '{ENROLLED}' FROM subscribers s
            WHERE s.status = '{ACTIVE}' AND {match}
              AND NOT EXISTS (SELECT 1 FROM enrollments e
                              WHERE e.subscriber_id = s.id AND e.campaign_key = :c)"""
        ).bindparams(bindparam("now", type_=UTCDateTime())),
        {**params, "now": now},
    )


# -- 2 and 3. position, next step, due time before the window --------------------------------


def _plus_seconds(dialect: str, moment: str, seconds: str) -> str:
    """SQL for `moment` + `seconds` (an integer expression), exact to the microsecond."""
    if dialect == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff': add to the whole seconds
        return (
            f"(strftime('%Y-%m-%d %H:%M:%S', substr({moment}, 1, 19), "
            f"'+' || ({seconds}) || ' seconds') || substr({moment}, 20))"
        )
    return f"({moment} + ({seconds}) * INTERVAL '1 second')"


def _later(dialect: str, a: str, b: str) -> str:
    """The later of two moments, never NULL here, each computed once (a CASE
    computed each twice: two date calculations more per enrollment)."""
    return f"max({a}, {b})" if dialect == "sqlite" else f"GREATEST({a}, {b})"


def _plan(conn: Connection, dialect: str, config: Config) -> None:
    moment = "VARCHAR(32)" if dialect == "sqlite" else "TIMESTAMP"  # as drip stores them
    conn.execute(
        text(
            f"""CREATE TEMPORARY TABLE drip_rp_plan (
                eid INTEGER PRIMARY KEY, sid INTEGER, ckey VARCHAR(64), pos INTEGER,
                zone VARCHAR(64), state VARCHAR(16), step_key VARCHAR(64),
                candidate {moment}, window_id INTEGER)"""
        )
    )
    at = "COALESCE(d.sent_at, d.updated_at)"
    base = _plus_seconds(dialect, "p.started_at", "nx.due_s")
    after = _plus_seconds(dialect, at, f"CASE WHEN d.status = '{SENT}' THEN nx.gap_s ELSE 0 END")
    blocking = f"d.status IN ('{CLAIMED}', '{IN_DOUBT}')"
    campaigns = ", ".join(f":k{i}" for i in range(len(config.campaigns))) or "NULL"
    conn.execute(
        text(
            f"""WITH p AS MATERIALIZED (  -- each position computed once
              SELECT e.id AS eid, e.subscriber_id AS sid, e.campaign_key AS ckey,
                     e.started_at AS started_at, s.timezone AS zone,
                     COALESCE((SELECT MAX(st.pos) FROM deliveries dd
                               JOIN drip_rp_steps st ON st.campaign_key = dd.campaign_key
                                                    AND st.step_key = dd.step_key
                               WHERE dd.subscriber_id = e.subscriber_id
                                 AND dd.campaign_key = e.campaign_key), -1) AS pos
              FROM enrollments e JOIN subscribers s ON s.id = e.subscriber_id
              WHERE s.status = '{ACTIVE}' AND e.state NOT IN ('{LEFT}', '{OPTED_OUT}')
                AND e.campaign_key IN ({campaigns})
            )
            INSERT INTO drip_rp_plan
                (eid, sid, ckey, pos, zone, state, step_key, candidate, window_id)
            SELECT p.eid, p.sid, p.ckey, p.pos, p.zone,
              CASE WHEN {blocking} THEN '{HELD}'
                   WHEN d.status = '{DEFERRED}' THEN '{ENROLLED}'
                   WHEN nx.step_key IS NULL THEN '{FINISHED}'
                   ELSE '{ENROLLED}' END,
              CASE WHEN {blocking} THEN NULL
                   WHEN d.status = '{DEFERRED}' THEN cur.step_key
                   ELSE nx.step_key END,
              CASE WHEN {blocking} THEN NULL
                   WHEN d.status = '{DEFERRED}' THEN COALESCE(d.next_attempt_at, {at})
                   WHEN nx.step_key IS NULL THEN NULL
                   WHEN d.status IS NULL THEN {base}
                   ELSE {_later(dialect, base, after)} END,
              CASE WHEN d.status = '{DEFERRED}' THEN cur.window_id ELSE nx.window_id END
            FROM p
            LEFT JOIN drip_rp_steps cur ON cur.campaign_key = p.ckey AND cur.pos = p.pos
            LEFT JOIN deliveries d ON d.subscriber_id = p.sid AND d.campaign_key = p.ckey
                                  AND d.step_key = cur.step_key
            LEFT JOIN drip_rp_steps nx ON nx.campaign_key = p.ckey AND nx.pos = p.pos + 1"""
        ),
        {f"k{i}": c.key for i, c in enumerate(config.campaigns)},
    )


# -- 4. send windows -----------------------------------------------------------------------


@dataclass(frozen=True)
class Openings:
    """A window's openings in one zone, in UTC, as schedule.next_allowed defines them."""

    opens: list[datetime]
    closes: list[datetime]

    def next_allowed(self, moment: datetime) -> datetime:
        """The same answer as schedule.next_allowed, for moments inside the covered dates."""
        i = bisect_right(self.closes, moment)
        return max(moment, self.opens[i])


def openings(window: SendWindow, tz: ZoneInfo, first: date, last: date) -> Openings:
    """Each allowed day's [open, close) from `first` to `last` (local dates), in UTC.

    Built exactly as schedule.next_allowed builds them (wall-clock hours, fold 0),
    so next_allowed(t) is t inside an opening, else the next opening's start.
    """
    opens, closes = [], []
    day = first
    while day <= last:
        if day.weekday() in window.weekdays:
            start = datetime.combine(day, time(window.start_hour), tz).astimezone(UTC)
            end = (
                datetime.combine(day + timedelta(days=1), time(0), tz)
                if window.end_hour == 24
                else datetime.combine(day, time(window.end_hour), tz)
            ).astimezone(UTC)
            if start < end:  # a clock change can skip every hour of it that day
                opens.append(start)
                closes.append(end)
        day += timedelta(days=1)
    return Openings(opens, closes)


def _utc(value: object) -> datetime:
    """A timestamp read back from a text query (SQLite gives strings)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _fill_windows(conn: Connection, windows: list[SendWindow]) -> None:
    """The openings of every (zone, window) in use, over the dates the plans need."""
    WINDOWS.create(conn)
    conn.execute(
        text("CREATE INDEX drip_rp_windows_key ON drip_rp_windows (zone, window_id, close_at)")
    )
    spans = conn.execute(
        text(
            """SELECT zone, window_id, MIN(candidate), MAX(candidate) FROM drip_rp_plan
            WHERE window_id > 0 AND candidate IS NOT NULL GROUP BY zone, window_id"""
        )
    ).all()
    for zone, window_id, low, high in spans:
        tz = ZoneInfo(zone)
        first = _utc(low).astimezone(tz).date() - timedelta(days=1)
        last = _utc(high).astimezone(tz).date() + timedelta(days=9)  # next_allowed looks 8 ahead
        found = openings(windows[window_id - 1], tz, first, last)
        if found.opens:
            conn.execute(
                insert(WINDOWS),
                [
                    {"zone": zone, "window_id": window_id, "open_at": o, "close_at": c}
                    for o, c in zip(found.opens, found.closes, strict=True)
                ],
            )


# -- apply, skip, clean up -------------------------------------------------------------------


def _apply(conn: Connection) -> None:
    lookup = """(SELECT CASE WHEN w.open_at > p.candidate THEN w.open_at ELSE p.candidate END
                 FROM drip_rp_windows w
                 WHERE w.zone = p.zone AND w.window_id = p.window_id AND w.close_at > p.candidate
                 ORDER BY w.close_at LIMIT 1)"""
    conn.execute(
        text(
            f"""UPDATE enrollments SET state = p.state, next_step_key = p.step_key,
                   next_due_at = CASE WHEN p.window_id = 0 OR p.candidate IS NULL
                                      THEN p.candidate ELSE {lookup} END
            FROM drip_rp_plan p WHERE enrollments.id = p.eid"""
        )
    )


def _skip_inserted(conn: Connection, dialect: str, now: datetime) -> None:
    ref = (
        "lower(hex(randomblob(16)))"
        if dialect == "sqlite"
        else "md5(random()::text || clock_timestamp()::text)"
    )
    conn.execute(
        text(
            f"""INSERT INTO deliveries (subscriber_id, campaign_key, step_key, status, ref,
                                        attempts, error, created_at, updated_at)
            SELECT p.sid, p.ckey, st.step_key, '{SKIPPED}', {ref}, 0, CAST(:reason AS TEXT),
                   :now, :now
            FROM drip_rp_plan p
            JOIN drip_rp_steps st ON st.campaign_key = p.ckey AND st.pos < p.pos
            WHERE p.pos > 0 AND NOT EXISTS (
                SELECT 1 FROM deliveries d WHERE d.subscriber_id = p.sid
                  AND d.campaign_key = p.ckey AND d.step_key = st.step_key)"""
        ).bindparams(bindparam("now", type_=UTCDateTime())),
        {"reason": INSERTED_REASON, "now": now},
    )


def _drop_temp(conn: Connection) -> None:
    for name in ("drip_rp_plan", "drip_rp_windows", "drip_rp_steps"):
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
