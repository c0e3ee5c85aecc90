"""Pipelines' cron schedules: checking one (`validate_schedule`), and the beat PeriodicTask that
fires it (`schedule_sync`).

How often a schedule may fire is measured as the shortest gap between two consecutive fire times.

Beat fires a crontab at every minute of `hour × minute` on each day whose date matches
`day_of_month`, `month_of_year` and `day_of_week` (celery ANDs the two day fields). The minutes of a
firing day are the same every day, so the shortest gap is either between two minutes of one day or,
when two consecutive calendar days both fire, across midnight. Whether two consecutive days both fire
is a property of the calendar: 28 years hold every (month, day, weekday) combination, leap days
included, so walking them answers it exactly.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError

from .models import Pipeline

SCHEDULED_TASK = "pipelines.pipeline_run_scheduled"

MINUTES_PER_DAY = 24 * 60
CALENDAR_CYCLE_DAYS = 28 * 365 + 7  # 28 years: the weekday-and-leap-year cycle of the calendar


def _fires_on(cron, day: date) -> bool:
    return day.month in cron.month_of_year and day.day in cron.day_of_month and day.isoweekday() % 7 in cron.day_of_week


def _two_days_in_a_row(cron) -> bool:
    day = date(2000, 1, 1)
    previous = _fires_on(cron, day)
    for _ in range(CALENDAR_CYCLE_DAYS):
        day += timedelta(days=1)
        current = _fires_on(cron, day)
        if previous and current:
            return True
        previous = current
    return False


def min_gap_minutes(cron) -> int:
    """The shortest time (in minutes) between two consecutive firings of a celery `crontab` (a lower
    bound of two days for a schedule that fires once a day on days never in a row)."""
    minutes = sorted(h * 60 + m for h in cron.hour for m in cron.minute)
    gaps = [b - a for a, b in zip(minutes, minutes[1:])]
    within_day = min(gaps) if gaps else None
    across_midnight = MINUTES_PER_DAY - minutes[-1] + minutes[0]
    if within_day is not None and within_day <= across_midnight:
        return within_day  # no gap across days can be shorter
    if _two_days_in_a_row(cron):
        return across_midnight
    # Firing days are at least two days apart: the gap across them is longer than any day's.
    return within_day if within_day is not None else (MINUTES_PER_DAY + across_midnight)


def validate_schedule(value: str) -> str:
    """A five-field cron expression (minute hour day-of-month month day-of-week), or ""."""
    from celery.schedules import crontab
    from django_celery_beat.validators import crontab_validator

    value = " ".join((value or "").split())
    if not value:
        return ""
    parts = value.split(" ")
    if len(parts) != 5:
        raise ValidationError({"schedule": f"{value!r} is not a cron expression: give 5 fields "
                                           "(minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\"."})
    try:
        crontab_validator(value)
        minute, hour, day_of_month, month_of_year, day_of_week = parts
        cron = crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                       day_of_week=day_of_week)
    except (ValidationError, ValueError, TypeError) as exc:
        detail = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        raise ValidationError({"schedule": f"{value!r} is not a valid cron expression ({detail})."}) from None
    least = settings.PIPELINE_MIN_SCHEDULE_MINUTES
    gap = min_gap_minutes(cron)
    if least > 0 and gap < least:
        raise ValidationError({"schedule": f"{value!r} fires as often as every {gap} minute{'s' if gap != 1 else ''}; "
                                           f"a schedule may fire at most once every {least} minutes "
                                           "(PIPELINE_MIN_SCHEDULE_MINUTES)."})
    return value


# --- the schedule: one PeriodicTask (and its CrontabSchedule) per scheduled pipeline --------------


def schedule_sync(pipeline: Pipeline) -> None:
    """Make the pipeline's PeriodicTask match its schedule (none when it has no schedule)."""
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    task = pipeline.periodic_task
    if not pipeline.schedule:
        if task is not None:
            Pipeline.objects.filter(pk=pipeline.pk).update(periodic_task=None)
            pipeline.periodic_task = None
            periodic_task_delete(task)
        return
    minute, hour, day_of_month, month_of_year, day_of_week = pipeline.schedule.split(" ")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year, day_of_week=day_of_week,
        timezone=settings.CELERY_TIMEZONE,
    )
    fields = {
        "task": SCHEDULED_TASK, "crontab": crontab, "interval": None, "args": json.dumps([pipeline.pk]),
        "enabled": True, "description": f"Runs the pipeline {pipeline.name!r} on its schedule ({pipeline.schedule}).",
    }
    if task is None:
        task = PeriodicTask(name=f"pipeline-{pipeline.pk}", **fields)
    else:
        old_crontab_id = task.crontab_id
        for key, value in fields.items():
            setattr(task, key, value)
    task.full_clean()
    task.save()
    if pipeline.periodic_task_id != task.pk:
        pipeline.periodic_task = task
        Pipeline.objects.filter(pk=pipeline.pk).update(periodic_task=task)
    elif old_crontab_id and old_crontab_id != crontab.pk:
        _crontab_forget(old_crontab_id)


def periodic_task_delete(task) -> None:
    crontab_id = task.crontab_id
    task.delete()
    if crontab_id:
        _crontab_forget(crontab_id)


def _crontab_forget(crontab_id: int) -> None:
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    if not PeriodicTask.objects.filter(crontab_id=crontab_id).exists():
        CrontabSchedule.objects.filter(pk=crontab_id).delete()
