"""How often a cron schedule fires: the shortest gap between two consecutive fire times.

Beat fires a crontab at every minute of `hour × minute` on each day whose date matches
`day_of_month`, `month_of_year` and `day_of_week` (celery ANDs the two day fields). The minutes of a
firing day are the same every day, so the shortest gap is either between two minutes of one day or,
when two consecutive calendar days both fire, across midnight. Whether two consecutive days both fire
is a property of the calendar: 28 years hold every (month, day, weekday) combination, leap days
included, so walking them answers it exactly.
"""

from __future__ import annotations

from datetime import date, timedelta

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
