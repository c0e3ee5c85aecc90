"""Silence matchers and maintenance schedules. No Django imports.

A silence's matchers all must hold for an alert to be silenced:
- `rule`: the alert's `rule` (its rule's slug, or `kind:<kind>`), exactly;
- `priority`: alerts at this priority or below;
- `subject`: a shell-style glob over the alert's subject (`host`, `host:metric`, `worker:<name>`,
  `training_job.12`, ...), case-sensitive;
- `project`: the alert's project id.
A maintenance window holds from each time its cron fires (UTC, minute resolution) for its duration.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime, timedelta

PRIORITIES = ("low", "medium", "high", "critical")
MATCHER_KEYS = ("rule", "priority", "subject", "project")
SUBJECT_MAX = 200


class InvalidMatchers(ValueError):
    """`errors` maps a matcher (or `matchers`) to what is wrong with it."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def clean_matchers(raw) -> dict:
    """The matchers as stored: known keys, non-empty values, at least one; InvalidMatchers otherwise."""
    if not isinstance(raw, dict):
        raise InvalidMatchers({"matchers": "An object of matchers: rule, priority, subject, project."})
    unknown = sorted(set(raw) - set(MATCHER_KEYS))
    if unknown:
        raise InvalidMatchers({k: f"Unknown matcher; the matchers are {', '.join(MATCHER_KEYS)}." for k in unknown})
    out, errors = {}, {}
    for key in MATCHER_KEYS:
        value = raw.get(key)
        if value is None or value == "":
            continue
        if key == "project":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                errors[key] = "A project's id (a positive integer)."
                continue
        elif key == "priority":
            if value not in PRIORITIES:
                errors[key] = f"One of {', '.join(PRIORITIES)}."
                continue
        else:
            if not isinstance(value, str) or len(value) > SUBJECT_MAX:
                errors[key] = f"A string of at most {SUBJECT_MAX} characters."
                continue
            value = value.strip()
            if not value:
                continue
        out[key] = value
    if errors:
        raise InvalidMatchers(errors)
    if not out:
        raise InvalidMatchers({"matchers": "Give at least one matcher (rule, priority, subject or project): "
                                           "an empty silence would silence every alert."})
    return out


def matches(matchers: dict, *, rule: str, priority: str, subject: str, project_id: int | None) -> bool:
    if not matchers:
        return False
    if "rule" in matchers and matchers["rule"] != rule:
        return False
    if "priority" in matchers:
        limit = PRIORITIES.index(matchers["priority"]) if matchers["priority"] in PRIORITIES else -1
        if priority not in PRIORITIES or PRIORITIES.index(priority) > limit:
            return False
    if "subject" in matchers and not fnmatch.fnmatchcase(subject or "", matchers["subject"]):
        return False
    if "project" in matchers and matchers["project"] != project_id:
        return False
    return True


# --- maintenance windows ----------------------------------------------------------------------------


def parse_cron(expression: str):
    """A celery crontab from five fields (minute hour day-of-month month day-of-week); ValueError."""
    from celery.schedules import crontab

    fields = " ".join((expression or "").split()).split(" ")
    if len(fields) != 5 or not all(fields):
        raise ValueError("Give 5 fields (minute hour day-of-month month day-of-week), e.g. \"0 2 * * 6\".")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                       day_of_week=day_of_week)
    except Exception as exc:  # celery raises ValueError and a few others for bad fields
        raise ValueError(f"Not a valid cron expression: {exc}") from None


def last_fire(cron, now: datetime, *, within: timedelta) -> datetime | None:
    """The latest minute at or before `now` (UTC) at which `cron` fires, looking back `within`."""
    now = now.replace(second=0, microsecond=0)
    earliest = now - within
    day = now.replace(hour=0, minute=0)
    while day + timedelta(days=1) > earliest:
        # celery's day_of_week counts from Sunday = 0; Python's weekday() from Monday = 0.
        if (day.day in cron.day_of_month and day.month in cron.month_of_year
                and (day.weekday() + 1) % 7 in cron.day_of_week):
            for hour in sorted(cron.hour, reverse=True):
                for minute in sorted(cron.minute, reverse=True):
                    at = day.replace(hour=hour, minute=minute)
                    if earliest <= at <= now:
                        return at
        day -= timedelta(days=1)
    return None


def window_active(expression: str, duration_minutes: int, now: datetime) -> datetime | None:
    """When the window that holds at `now` ends, or None when none holds."""
    if duration_minutes <= 0:
        return None
    try:
        cron = parse_cron(expression)
    except ValueError:
        return None
    duration = timedelta(minutes=duration_minutes)
    start = last_fire(cron, now, within=duration)
    if start is None or now >= start + duration:
        return None
    return start + duration
