"""Writing and rolling up points: the only module that knows how the point tables are laid out."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import connection
from django.db.models import Count, Max, Min, Sum
from django.db.models.functions import TruncHour, TruncMinute

from .models import HourRollup, MinuteRollup, Point

Row = tuple[int, datetime, float]  # (series id, timestamp, value)


def points_write(rows: list[Row]) -> None:
    """Upsert readings; a (series, timestamp) already stored takes the new value. `rows` hold at most
    one reading per (series, timestamp)."""
    if not rows:
        return
    Point.objects.bulk_create(
        [Point(series_id=s, timestamp=t, value=v) for s, t, v in rows],
        update_conflicts=True, unique_fields=["series_id", "timestamp"], update_fields=["value"],
        batch_size=2000,
    )


def rollups_refresh(series_ids: Iterable[int], start: datetime, end: datetime) -> None:
    """Recompute the minute and hour buckets of these series that overlap [start, end]."""
    series_ids = list(series_ids)
    for model, trunc in ((MinuteRollup, TruncMinute), (HourRollup, TruncHour)):
        lo = _floor(start, model)
        points = Point.objects.filter(series_id__in=series_ids, timestamp__gte=lo, timestamp__lte=end)
        grouped = (points.annotate(b=trunc("timestamp")).values("series_id", "b")
                   .annotate(n=Count("value"), s=Sum("value"), lo=Min("value"), hi=Max("value")))
        rows = [model(series_id=g["series_id"], bucket=g["b"], count=g["n"], sum=g["s"], min=g["lo"], max=g["hi"])
                for g in grouped]
        model.objects.bulk_create(rows, update_conflicts=True, unique_fields=["series_id", "bucket"],
                                  update_fields=["count", "sum", "min", "max"], batch_size=2000)


def _floor(moment: datetime, model) -> datetime:
    if model is MinuteRollup:
        return moment.replace(second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"
