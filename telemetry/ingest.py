"""Parsing and validating an ingest request's points, fast: one tight loop, no serializer per point.

Pure (no database): the API calls `readings_parse` and hands the result to `services.points_ingest`;
the CSV import uses the same field checks (`name_check`, `value_check`, `timestamp_parse`)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from .services import Grouped
from .store import EPOCH, MICROSECOND

NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
NAME_RULE = "1 to 100 of A-Z a-z 0-9 . _ -"
# Readings before this are refused (a number below it is almost always epoch seconds, not ms);
# after the server's clock plus FUTURE_SLACK too (a clock far ahead would pin a series' last value).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
EARLIEST_MS = 946_684_800_000
FUTURE_SLACK = timedelta(days=1)
TIMESTAMP_RULE = "ISO 8601 (2026-12-02T10:00:00Z; without an offset, UTC) or epoch milliseconds (a number)"


class PointError(ValueError):
    """A bad field of a point: `index` (None for a CSV line, given by the caller), `field`, message."""

    def __init__(self, field: str, message: str, index: int | None = None):
        super().__init__(message)
        self.field = field
        self.message = message
        self.index = index


def name_check(value, field: str) -> str:
    if type(value) is not str or NAME.fullmatch(value) is None:
        if value is None:
            raise PointError(field, f"Required: a name ({NAME_RULE}).")
        raise PointError(field, f"A name of {NAME_RULE}; got {_show(value)}.")
    return value


def value_check(value) -> float:
    kind = type(value)
    if kind is float:
        if math.isfinite(value):
            return value
        raise PointError("value", "A finite number (not NaN or infinity).")
    if kind is int:
        if -1e308 < value < 1e308:
            return float(value)
        raise PointError("value", "A finite number: this one is out of range.")
    if value is None:
        raise PointError("value", "Required: a number.")
    raise PointError("value", f"A number; got {_show(value)}.")


def timestamp_parse(value, latest: datetime) -> datetime:
    """A reading's time, aware (UTC when the ISO text has no offset), within [EARLIEST, latest]."""
    kind = type(value)
    if kind is str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise PointError("timestamp", f"{TIMESTAMP_RULE}; got {_show(value)}.") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        else:
            try:
                moment = moment.astimezone(UTC)
            except OverflowError:
                raise PointError("timestamp", f"Out of range: {_show(value)}.") from None
        if moment < EARLIEST:
            raise PointError("timestamp", f"Before {EARLIEST:%Y-%m-%d}: {_show(value)}.")
    elif kind is int or kind is float:
        if kind is float and not math.isfinite(value):
            raise PointError("timestamp", "A finite number of epoch milliseconds (not NaN or infinity).")
        if value < EARLIEST_MS:
            raise PointError("timestamp", f"Epoch milliseconds, from {EARLIEST:%Y-%m-%d} on; {value!r} is earlier "
                                          "(epoch seconds? multiply by 1000).")
        if value > latest.timestamp() * 1000:
            raise PointError("timestamp", f"{value!r} ms is after {latest:%Y-%m-%dT%H:%M:%SZ}: too far in the future.")
        moment = datetime.fromtimestamp(value / 1000, tz=UTC)
    else:
        raise PointError("timestamp", f"{TIMESTAMP_RULE}; got {_show(value)}.")
    if moment > latest:
        raise PointError("timestamp", f"{_show(value)} is after {latest:%Y-%m-%dT%H:%M:%SZ}: too far in the future.")
    return moment


def readings_parse(points, now: datetime) -> Grouped:
    """Every point, by series (its time in epoch microseconds; the last value sent for a time wins),
    or PointError naming the first bad one (index and field)."""
    if type(points) is not list:
        raise PointError("points", "A list of points: {source, metric, value, timestamp?}.")
    latest = now + FUTURE_SLACK
    series: dict[tuple[str, str], dict[int, float]] = {}
    fullmatch = NAME.fullmatch
    isfinite = math.isfinite
    fromisoformat = datetime.fromisoformat
    epoch, microsecond = EPOCH, MICROSECOND
    now_us = (now - epoch) // microsecond
    latest_ms = latest.timestamp() * 1000
    names: set[str] = set()
    for index, point in enumerate(points):
        if type(point) is not dict:
            raise PointError("", f"An object {{source, metric, value, timestamp?}}; got {_show(point)}.", index)
        source = point.get("source")
        metric = point.get("metric")
        value = point.get("value")
        stamp = point.get("timestamp")
        try:
            # The common case inline (known names, a float, epoch ms or ISO text in UTC); the rest,
            # and every error, through the checks above. Names repeat: one regex match per distinct name.
            if type(source) is not str or source not in names:
                if type(source) is not str or fullmatch(source) is None:
                    name_check(source, "source")
                names.add(source)
            if type(metric) is not str or metric not in names:
                if type(metric) is not str or fullmatch(metric) is None:
                    name_check(metric, "metric")
                names.add(metric)
            if type(value) is not float or not isfinite(value):
                value = value_check(value)
            if type(stamp) is int and EARLIEST_MS <= stamp <= latest_ms:  # epoch ms, in range
                moment = stamp * 1000
            elif stamp is None:  # left out (or null): the server's time
                moment = now_us
            else:
                moment = None
                if type(stamp) is str:
                    try:
                        parsed = fromisoformat(stamp)
                        if parsed.tzinfo is UTC and EARLIEST <= parsed <= latest:
                            moment = (parsed - epoch) // microsecond
                    except ValueError:
                        pass
                if moment is None:
                    moment = (timestamp_parse(stamp, latest) - epoch) // microsecond
        except PointError as exc:
            exc.index = index
            raise
        times = series.get((source, metric))
        if times is None:
            times = series[(source, metric)] = {}
        times[moment] = value
    return Grouped(series, len(points))


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
