"""Schedule expressions: golden fire times for each syntax, the errors bad
expressions get, DST behaviour, and the catch-up rule of ``due``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from skiff.bus import InvalidSchedule
from skiff.bus.schedules import due, parse_schedule

REF = datetime(2026, 1, 1, 0, 2, tzinfo=UTC)  # a Thursday
NY = ZoneInfo("America/New_York")


def fires(expr: str, tz: str = "UTC", n: int = 3, after: datetime = REF) -> list[str]:
    schedule = parse_schedule(expr, tz)
    out: list[str] = []
    t: datetime | None = after
    while len(out) < n and (t := schedule.next_after(t)) is not None:
        out.append(t.isoformat())
    return out


GOLDEN = [
    ("rate(5 minutes)", "UTC",
     ["2026-01-01T00:05:00+00:00", "2026-01-01T00:10:00+00:00", "2026-01-01T00:15:00+00:00"]),
    ("rate(1 hour)", "UTC",
     ["2026-01-01T01:00:00+00:00", "2026-01-01T02:00:00+00:00", "2026-01-01T03:00:00+00:00"]),
    ("rate(1 day)", "UTC",
     ["2026-01-02T00:00:00+00:00", "2026-01-03T00:00:00+00:00", "2026-01-04T00:00:00+00:00"]),
    ("rate(2 days)", "UTC",
     ["2026-01-03T00:00:00+00:00", "2026-01-05T00:00:00+00:00", "2026-01-07T00:00:00+00:00"]),
    ("cron(0 12 * * ? *)", "UTC",
     ["2026-01-01T12:00:00+00:00", "2026-01-02T12:00:00+00:00", "2026-01-03T12:00:00+00:00"]),
    ("cron(0 12 * * ? *)", "Asia/Tokyo",
     ["2026-01-01T12:00:00+09:00", "2026-01-02T12:00:00+09:00", "2026-01-03T12:00:00+09:00"]),
    ("cron(0 18 ? * MON-FRI *)", "UTC",
     ["2026-01-01T18:00:00+00:00", "2026-01-02T18:00:00+00:00", "2026-01-05T18:00:00+00:00"]),
    ("cron(0/15 * * * ? *)", "UTC",
     ["2026-01-01T00:15:00+00:00", "2026-01-01T00:30:00+00:00", "2026-01-01T00:45:00+00:00"]),
    ("cron(0 8 1 * ? *)", "UTC",
     ["2026-01-01T08:00:00+00:00", "2026-02-01T08:00:00+00:00", "2026-03-01T08:00:00+00:00"]),
    ("cron(0 10 ? * 6L *)", "UTC",  # last Friday
     ["2026-01-30T10:00:00+00:00", "2026-02-27T10:00:00+00:00", "2026-03-27T10:00:00+00:00"]),
    ("cron(0 10 ? * 3#2 *)", "UTC",  # second Tuesday
     ["2026-01-13T10:00:00+00:00", "2026-02-10T10:00:00+00:00", "2026-03-10T10:00:00+00:00"]),
    ("cron(0 10 L * ? *)", "UTC",  # last day of the month
     ["2026-01-31T10:00:00+00:00", "2026-02-28T10:00:00+00:00", "2026-03-31T10:00:00+00:00"]),
    ("cron(0 10 15W * ? *)", "UTC",  # weekday nearest the 15th
     ["2026-01-15T10:00:00+00:00", "2026-02-16T10:00:00+00:00", "2026-03-16T10:00:00+00:00"]),
    ("cron(0 10 ? * 1 *)", "UTC",  # AWS day 1 is Sunday
     ["2026-01-04T10:00:00+00:00", "2026-01-11T10:00:00+00:00", "2026-01-18T10:00:00+00:00"]),
    ("cron(0 10 ? * 2,4 *)", "UTC",  # Monday and Wednesday
     ["2026-01-05T10:00:00+00:00", "2026-01-07T10:00:00+00:00", "2026-01-12T10:00:00+00:00"]),
    ("cron(0 10 ? * L *)", "UTC",  # last day of the week: Saturday
     ["2026-01-03T10:00:00+00:00", "2026-01-10T10:00:00+00:00", "2026-01-17T10:00:00+00:00"]),
    ("cron(0 12 1 1 ? 2027-2028)", "UTC",
     ["2027-01-01T12:00:00+00:00", "2028-01-01T12:00:00+00:00"]),
    ("0 9 * * 1-5", "UTC",  # standard cron: 1 is Monday
     ["2026-01-01T09:00:00+00:00", "2026-01-02T09:00:00+00:00", "2026-01-05T09:00:00+00:00"]),
    ("@daily", "UTC",
     ["2026-01-02T00:00:00+00:00", "2026-01-03T00:00:00+00:00", "2026-01-04T00:00:00+00:00"]),
    ("at(2026-12-01T10:00:00)", "Europe/Amsterdam", ["2026-12-01T10:00:00+01:00"]),
]


@pytest.mark.parametrize("expr, tz, expected", GOLDEN, ids=[f"{e} {tz}" for e, tz, _ in GOLDEN])
def test_golden_fire_times(expr: str, tz: str, expected: list[str]) -> None:
    """Each expression fires at the times EventBridge Scheduler would, in the schedule's zone."""
    assert fires(expr, tz) == expected


INVALID = [
    ("rate(1 minutes)", "rate(1 minute)"),
    ("rate(5 minute)", "rate(5 minutes)"),
    ("rate(0 minutes)", "positive"),
    ("rate(5 weeks)", "unit"),
    ("rate(five minutes)", "rate(<value> <unit>)"),
    ("cron(0 12 * * * *)", "exactly one of"),
    ("cron(0 12 ? * ? *)", "exactly one of"),
    ("cron(0 12 * * ?)", "6 fields"),
    ("cron(0 12 ? * 8 *)", "not a day of the week"),
    ("cron(0 12 ? * 0 *)", "not a day of the week"),
    ("cron(0 12 ? * 3#1,6#3 *)", "single expression"),
    ("cron(0 12 LW * ? *)", "LW"),
    ("cron(60 * * * ? *)", "not a valid cron"),
    ("cron(0 12 * * ? 1999)", "never fires"),
    ("* * * *", "5-field"),
    ("0 0 30 2 *", "never fires"),
    ("at(tomorrow)", "at(yyyy-mm-ddThh:mm:ss)"),
    ("every(5 minutes)", "unknown schedule kind"),
]


@pytest.mark.parametrize("expr, hint", INVALID, ids=[e for e, _ in INVALID])
def test_invalid_expressions_say_how_to_fix_them(expr: str, hint: str) -> None:
    """Each bad expression raises invalid_schedule (400) with a message that points at the fix."""
    with pytest.raises(InvalidSchedule) as info:
        parse_schedule(expr)
    assert (info.value.code, info.value.status) == ("invalid_schedule", 400)
    assert hint in info.value.message


def test_unknown_time_zone() -> None:
    """An unknown zone name is an invalid_schedule error, not a ZoneInfo traceback."""
    with pytest.raises(InvalidSchedule, match="unknown time zone"):
        parse_schedule("rate(1 hour)", "Mars/Olympus_Mons")


def test_naive_datetimes_are_refused() -> None:
    """Schedules only accept timezone-aware datetimes, so no one guesses a zone."""
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("rate(1 hour)").next_after(datetime(2026, 1, 1))


def test_spring_forward_skips_a_wall_time_that_does_not_exist() -> None:
    """At 02:30 daily in New York, the day clocks jump from 02:00 to 03:00 has no fire."""
    got = fires("cron(30 2 * * ? *)", "America/New_York", 2,
                datetime(2026, 3, 7, 12, 0, tzinfo=NY))
    assert got == ["2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]


def test_fall_back_fires_a_repeated_wall_time_once() -> None:
    """At hh:30 hourly, the repeated 01:30 fires only at its first occurrence."""
    got = fires("cron(30 * * * ? *)", "America/New_York", 4,
                datetime(2026, 11, 1, 0, 0, tzinfo=NY))
    assert got == ["2026-11-01T00:30:00-04:00", "2026-11-01T01:30:00-04:00",
                   "2026-11-01T02:30:00-05:00", "2026-11-01T03:30:00-05:00"]


def test_cron_keeps_local_wall_time_across_dst() -> None:
    """A noon cron stays at noon local time before and after the change (UTC offset moves)."""
    got = fires("cron(0 12 * * ? *)", "America/New_York", 2,
                datetime(2026, 3, 7, 13, 0, tzinfo=NY))
    assert got == ["2026-03-08T12:00:00-04:00", "2026-03-09T12:00:00-04:00"]


def test_rate_days_are_24_hours_across_dst() -> None:
    """rate(1 day) counts 24 elapsed hours, so its local hour shifts when DST starts."""
    schedule = parse_schedule("rate(1 day)", "America/New_York")
    a = schedule.next_after(datetime(2026, 3, 7, 0, 0, tzinfo=NY))
    b = schedule.next_after(a)
    assert b.astimezone(UTC) - a.astimezone(UTC) == timedelta(hours=24)
    assert (a.hour, b.hour) == (19, 20)


def test_inside_the_repeated_hour_comparisons_use_real_time() -> None:
    """From 01:30 EST (the second 01:30), the last quarter-hour fire was 01:45 EDT and the next is 02:00 EST."""
    schedule = parse_schedule("*/15 * * * *", "America/New_York")
    second_0130 = datetime(2026, 11, 1, 1, 30, tzinfo=NY, fold=1)
    assert schedule.last_at_or_before(second_0130).isoformat() == "2026-11-01T01:45:00-04:00"
    assert schedule.next_after(second_0130).isoformat() == "2026-11-01T02:00:00-05:00"


def test_rate_start_anchors_the_fires() -> None:
    """A rate with a start fires at start + k * interval and never before start."""
    start = datetime(2026, 1, 1, 0, 7, tzinfo=UTC)
    schedule = parse_schedule("rate(10 minutes)", start=start)
    assert schedule.next_after(REF) == start
    assert schedule.last_at_or_before(REF) is None
    assert schedule.next_after(start) == start + timedelta(minutes=10)


def test_fires_between_is_half_open_and_bounded() -> None:
    """fires_between(a, b) excludes a, includes b, and stops at limit."""
    schedule = parse_schedule("rate(1 hour)")
    a = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
    b = datetime(2026, 1, 1, 4, 0, tzinfo=UTC)
    assert [f.hour for f in schedule.fires_between(a, b)] == [2, 3, 4]
    assert [f.hour for f in schedule.fires_between(a, b, limit=2)] == [2, 3]


def test_at_fires_once() -> None:
    """at() has one fire: nothing after it, itself at or before any later time."""
    schedule = parse_schedule("at(2026-06-01T09:00:00)")
    when = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    assert schedule.next_after(when) is None
    assert schedule.last_at_or_before(when + timedelta(days=1)) == when
    assert schedule.last_at_or_before(when - timedelta(seconds=1)) is None


# -- due: neither missed nor doubled across restarts ------------------------------------
HOURLY = parse_schedule("cron(0 * * * ? *)")


def at(hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(2026, 1, 1, hh, mm, ss, tzinfo=UTC)


def test_due_on_time_fire_runs_once() -> None:
    """A tick just after 12:00 runs the 12:00 fire; the next tick, checkpointed, runs nothing."""
    assert due(HOURLY, at(11, 59, 30), at(12, 0, 1)) == [at(12)]
    assert due(HOURLY, at(12, 0, 1), at(12, 0, 31)) == []


def test_due_after_downtime_runs_a_missed_schedule_once_by_default() -> None:
    """Down from 08:00 to 12:30, an hourly schedule runs once at start (its 12:00 fire)."""
    assert due(HOURLY, at(8), at(12, 30)) == [at(12)]


def test_due_catch_up_all_runs_every_missed_fire_oldest_first() -> None:
    """catch_up='all' returns each missed fire, oldest first, keeping the latest `limit`."""
    assert due(HOURLY, at(8), at(12, 30), catch_up="all") == [at(9), at(10), at(11), at(12)]
    assert due(HOURLY, at(8), at(12, 30), catch_up="all", limit=2) == [at(11), at(12)]


def test_due_catch_up_none_skips_fires_older_than_grace() -> None:
    """catch_up='none' runs only fires within grace of now: on-time ones, never missed ones."""
    assert due(HOURLY, at(8), at(12, 30), catch_up="none") == []
    assert due(HOURLY, at(8), at(12, 0, 20), catch_up="none") == [at(12)]


def test_due_missed_at_schedule_runs_once_after_restart() -> None:
    """A one-shot whose time passed while down runs once, and never again after the checkpoint."""
    once = parse_schedule("at(2026-01-01T10:00:00)")
    assert due(once, at(9), at(11)) == [at(10)]
    assert due(once, at(11), at(12)) == []


def test_due_with_a_clock_that_went_backwards_runs_nothing() -> None:
    """now at or before the checkpoint yields no fires (no doubles after a clock step back)."""
    assert due(HOURLY, at(12, 30), at(12, 0)) == []


def test_due_rejects_an_unknown_catch_up() -> None:
    """A typo in catch_up is a programming error."""
    with pytest.raises(ValueError, match="catch_up"):
        due(HOURLY, at(8), at(9), catch_up="some")  # type: ignore[arg-type]
