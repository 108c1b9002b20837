"""Schedule expressions, as pure functions over timezone-aware datetimes.

The accepted syntax is EventBridge Scheduler's, so a ``schedule:`` written for
AWS means the same here:

* ``rate(5 minutes)``, ``rate(1 hour)``, ``rate(2 days)``: a fixed duration
  (a day is 24 hours, whatever DST does), singular unit for 1. Fires at
  ``start + k * interval``; ``start`` defaults to the Unix epoch, so fire times
  do not drift across restarts.
* ``cron(0 12 * * ? *)``: AWS's six fields (minutes hours day-of-month month
  day-of-week year), exactly one of the day fields ``?``; day-of-week 1-7 is
  SUN-SAT; ``L``, ``W`` and ``#`` as far as croniter supports them (not ``LW``).
* ``*/5 * * * *``: a standard five-field cron line (day-of-week 0-6 = SUN-SAT),
  ``@hourly`` and friends.
* ``at(2026-12-01T10:00:00)``: once.

Cron and at() read wall-clock time in ``tz``. Across DST changes we do what
EventBridge Scheduler does: a wall time that does not exist (spring forward)
is skipped, a wall time that happens twice (fall back) fires once, at its first
occurrence.

Fire times come back in the schedule's zone; subtract or compare them in UTC
(Python compares two datetimes of one zone by wall time, ignoring DST folds).

:func:`due` is the no-missed / no-doubled rule for a ticker that restarts: it
turns a persisted checkpoint and ``now`` into the fires to run.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from skiff.bus.errors import InvalidSchedule

CatchUp = Literal["one", "all", "none"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_TICK = timedelta(microseconds=1)
_MAX_RATE = timedelta(days=36_500)


@dataclass(frozen=True)
class Schedule(abc.ABC):
    """A parsed schedule expression; immutable and safe to share."""

    expression: str
    tz: ZoneInfo

    def next_after(self, t: datetime) -> datetime | None:
        """The first fire strictly after ``t``; None if there is none."""
        return next(self._forward(_aware(t)), None)

    def last_at_or_before(self, t: datetime) -> datetime | None:
        """The latest fire at or before ``t``; None if there is none."""
        return next(self._backward(_aware(t)), None)

    def fires_between(self, a: datetime, b: datetime, *, limit: int = 10_000) -> list[datetime]:
        """Fires in the half-open window ``(a, b]``, oldest first, at most ``limit``."""
        out: list[datetime] = []
        b = _aware(b)
        for fire in self._forward(_aware(a)):
            if fire > b or len(out) == limit:
                break
            out.append(fire)
        return out

    @abc.abstractmethod
    def _forward(self, t: datetime) -> Iterator[datetime]:
        """Fires strictly after ``t``, ascending."""

    @abc.abstractmethod
    def _backward(self, t: datetime) -> Iterator[datetime]:
        """Fires at or before ``t``, descending."""


@dataclass(frozen=True)
class RateSchedule(Schedule):
    interval: timedelta
    start: datetime = _EPOCH

    def _forward(self, t: datetime) -> Iterator[datetime]:
        k = max(0, (t - self.start) // self.interval + 1)
        while True:
            yield (self.start + k * self.interval).astimezone(self.tz)
            k += 1

    def _backward(self, t: datetime) -> Iterator[datetime]:
        k = (t - self.start) // self.interval
        while k >= 0:
            yield (self.start + k * self.interval).astimezone(self.tz)
            k -= 1


@dataclass(frozen=True)
class AtSchedule(Schedule):
    when: datetime

    def _forward(self, t: datetime) -> Iterator[datetime]:
        if self.when > t:
            yield self.when

    def _backward(self, t: datetime) -> Iterator[datetime]:
        if self.when <= t:
            yield self.when


@dataclass(frozen=True)
class CronSchedule(Schedule):
    #: The expression in croniter's syntax (AWS cron translated).
    cron: str

    def _forward(self, t: datetime) -> Iterator[datetime]:
        it = croniter(self.cron, _wall(t, self.tz))
        while (wall := _step(it, forward=True)) is not None:
            fire = _resolve(wall, self.tz)
            if fire is not None and fire > t:
                yield fire

    def _backward(self, t: datetime) -> Iterator[datetime]:
        local = t.astimezone(self.tz)
        # During the repeated hour of a fall-back, wall times later than t's
        # own already fired (their first occurrence is earlier than t).
        shift = local.replace(fold=0).utcoffset() - local.replace(fold=1).utcoffset()  # type: ignore[operator]
        it = croniter(self.cron, _wall(t, self.tz) + max(shift, timedelta(0)) + _TICK)
        while (wall := _step(it, forward=False)) is not None:
            fire = _resolve(wall, self.tz)
            if fire is not None and fire <= t:
                yield fire


def parse_schedule(expr: str, tz: str = "UTC", *, start: datetime | None = None) -> Schedule:
    """Parse ``rate()``, ``cron()``, ``at()`` or a five-field cron line.

    ``tz`` is an IANA zone name for cron and at(); ``start`` anchors a rate
    (its first fire). Raises :class:`InvalidSchedule` with a message that
    says how to fix the expression.
    """
    if not isinstance(expr, str):
        raise InvalidSchedule(f"a schedule expression is a string, got {type(expr).__name__}")
    zone = _zone(tz)
    text = expr.strip()
    kind, inner = _split(text)
    if kind == "rate":
        return RateSchedule(text, zone, _rate(text, inner),
                            _EPOCH if start is None else _aware(start))
    if kind == "at":
        return AtSchedule(text, zone, _at(text, inner, zone))
    if kind == "cron":
        fields = inner.split()
        if len(fields) != 6:
            raise InvalidSchedule(
                f"{text}: cron() takes AWS's 6 fields (minutes hours day-of-month month "
                f"day-of-week year), got {len(fields)}; write a standard 5-field line "
                "without cron(...)")
        return _cron(text, zone, _aws_cron(text, fields))
    if kind is not None:
        raise InvalidSchedule(f"{text}: unknown schedule kind {kind!r}; use rate(), cron(), "
                              "at() or a 5-field cron line")
    fields = text.split()
    if not (len(fields) == 5 or (len(fields) == 1 and text.startswith("@"))):
        raise InvalidSchedule(f"{text!r}: expected rate(...), cron(...), at(...) or a standard "
                              f"5-field cron line, got {len(fields)} fields")
    return _cron(text, zone, text)


def due(schedule: Schedule, last_fire: datetime, now: datetime, *, catch_up: CatchUp = "one",
        grace: timedelta = timedelta(minutes=1), limit: int = 1000) -> list[datetime]:
    """The fires to run at ``now``, given the checkpoint ``last_fire``.

    ``last_fire`` is the ``now`` of the previous call whose fires were durably
    handed on (the schedule's creation time before the first call). After
    enqueuing the returned fires, persist ``now`` as the next checkpoint: a
    fire is then neither missed nor run twice across restarts. (A crash
    between enqueue and checkpoint repeats the fires; send them with
    deterministic message ids, e.g. ``f"{name}@{fire.isoformat()}"``.)

    Fires in ``(last_fire, now]`` are due; how many of them run:
    ``"one"`` (default): the latest only, so a platform that was down runs a
    missed schedule once at start; ``"all"``: each, oldest first (at most the
    latest ``limit``); ``"none"``: only those within ``grace`` of ``now``.
    """
    last_fire, now = _aware(last_fire), _aware(now)
    if now <= last_fire:
        return []
    if catch_up == "one":
        latest = schedule.last_at_or_before(now)
        return [latest] if latest is not None and latest > last_fire else []
    if catch_up == "none":
        return schedule.fires_between(max(last_fire, now - grace), now, limit=limit)
    if catch_up == "all":
        fires: list[datetime] = []
        for fire in schedule._backward(now):
            if fire <= last_fire or len(fires) == limit:
                break
            fires.append(fire)
        return fires[::-1]
    raise ValueError(f"catch_up must be 'one', 'all' or 'none', not {catch_up!r}")


# -- parsing helpers -----------------------------------------------------------------
def _split(text: str) -> tuple[str | None, str]:
    match = re.fullmatch(r"([a-z]+)\((.*)\)", text, re.DOTALL)
    return (match[1], match[2].strip()) if match else (None, text)


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidSchedule(f"unknown time zone {tz!r}; use an IANA name such as "
                              "'UTC' or 'Europe/Amsterdam'", tz=tz) from None


def _rate(text: str, inner: str) -> timedelta:
    match = re.fullmatch(r"(\d+)\s+([a-z]+)", inner)
    if not match:
        raise InvalidSchedule(f"{text}: write rate(<value> <unit>), e.g. rate(5 minutes)")
    value, unit = int(match[1]), match[2]
    singular = unit[:-1] if unit.endswith("s") else unit
    if singular not in _UNITS:
        raise InvalidSchedule(f"{text}: unknown unit {unit!r}; use minutes, hours or days")
    if value < 1:
        raise InvalidSchedule(f"{text}: the value must be a positive integer")
    if value > _MAX_RATE // _UNITS[singular]:  # compared as ints: no timedelta overflow
        # also keeps the fire arithmetic (start + k * interval) inside datetime's range
        raise InvalidSchedule(f"{text}: a rate is at most {_MAX_RATE.days} days")
    expected = singular if value == 1 else singular + "s"
    if unit != expected:
        raise InvalidSchedule(f"{text}: write rate({value} {expected})")
    return value * _UNITS[singular]


def _at(text: str, inner: str, zone: ZoneInfo) -> datetime:
    try:
        when = datetime.fromisoformat(inner)
    except ValueError:
        raise InvalidSchedule(f"{text}: write at(yyyy-mm-ddThh:mm:ss)") from None
    return when.replace(tzinfo=zone) if when.tzinfo is None else when


def _cron(text: str, zone: ZoneInfo, cron: str) -> CronSchedule:
    try:
        croniter(cron, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterError as exc:
        reason = "it never fires" if "find" in str(exc) else str(exc)
        raise InvalidSchedule(f"{text}: not a valid cron expression: {reason}") from None
    return CronSchedule(text, zone, cron)


def _aws_cron(text: str, fields: list[str]) -> str:
    minute, hour, dom, month, dow, year = (f.upper() for f in fields)
    if (dom == "?") == (dow == "?"):
        raise InvalidSchedule(f"{text}: exactly one of day-of-month and day-of-week must be ?, "
                              "e.g. cron(0 12 * * ? *) or cron(0 12 ? * MON-FRI *)")
    if "LW" in dom:
        raise InvalidSchedule(f"{text}: LW (last weekday of the month) is not supported")
    if "?" in minute + hour + month + year:
        raise InvalidSchedule(f"{text}: ? is only allowed in day-of-month or day-of-week")
    day_of_week = "*" if dow == "?" else _aws_dow(text, dow)
    return f"{minute} {hour} {'*' if dom == '?' else dom} {month} {day_of_week} 0 {year}"


def _aws_dow(text: str, dow: str) -> str:
    """AWS numbers days 1-7 from Sunday, croniter 0-6; and writes 'last Friday'
    as 6L where croniter wants L5."""
    if "#" in dow and "," in dow:
        raise InvalidSchedule(f"{text}: with #, day-of-week holds a single expression")
    out = []
    for token in dow.split(","):
        if token == "L":
            out.append("6")  # the last day of the week: Saturday
        elif m := re.fullmatch(r"(\w+)L", token):
            out.append(f"L{_aws_day(text, m[1], numeric=True)}")
        elif m := re.fullmatch(r"(\w+)#(\d+)", token):
            out.append(f"{_aws_day(text, m[1])}#{m[2]}")
        elif m := re.fullmatch(r"(\w+)-(\w+)(/\d+)?", token):
            out.append(f"{_aws_day(text, m[1])}-{_aws_day(text, m[2])}{m[3] or ''}")
        elif m := re.fullmatch(r"(\w+)(/\d+)", token):
            out.append(f"{_aws_day(text, m[1])}{m[2]}")
        elif token == "*" or re.fullmatch(r"\*/\d+", token):
            out.append(token)
        else:
            out.append(_aws_day(text, token))
    return ",".join(out)


def _aws_day(text: str, day: str, *, numeric: bool = False) -> str:
    if day.isdigit() and 1 <= int(day) <= 7:
        return str(int(day) - 1)
    if day in _DAYS:
        return str(_DAYS.index(day)) if numeric else day
    raise InvalidSchedule(f"{text}: {day!r} is not a day of the week (1-7 or SUN-SAT)")


# -- time helpers --------------------------------------------------------------------
def _aware(t: datetime) -> datetime:
    """``t`` in UTC: datetimes sharing a tzinfo compare by wall time, ignoring
    ``fold``, which is wrong inside a repeated DST hour."""
    if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"schedules work on timezone-aware datetimes, got {t!r}")
    return t.astimezone(UTC)


def _wall(t: datetime, zone: ZoneInfo) -> datetime:
    return t.astimezone(zone).replace(tzinfo=None)


def _resolve(wall: datetime, zone: ZoneInfo) -> datetime | None:
    """The instant a wall-clock time names: None if DST skips it, the first
    occurrence if DST repeats it."""
    fire = wall.replace(tzinfo=zone, fold=0)
    if fire.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
        return None
    return fire


def _step(it: croniter, *, forward: bool) -> datetime | None:
    try:
        return it.get_next(datetime) if forward else it.get_prev(datetime)
    except CroniterError:  # past the years croniter searches, or its year range
        return None
