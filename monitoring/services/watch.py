"""Service and job checks: the components, the workers, failed and stalled jobs."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from mlops_dashboard import jobs
from mlops_dashboard.events import catalog, publish_on_commit
from mlops_dashboard.jobs import JobStatus

from .. import state
from ..models import Alert, AlertRule
from .alerts import _rule_for, alert_condition_clear, alert_raise, alert_rules_check_system
from .health import health_update, project_metrics_publish

logger = logging.getLogger(__name__)


def monitoring_check() -> dict:
    """What beat (and, as a fallback, every collector) runs each interval; each part is throttled
    by a lock in Redis so that it runs once per interval whatever the number of callers."""
    done = {}
    if state.try_lock("check-services", settings.MONITORING_CHECK_INTERVAL * 0.9):
        done["services"] = services_check()
    if state.try_lock("check-jobs", settings.MONITORING_INTERVAL * 0.9):
        done["jobs"] = jobs_check()
        stats = state.process_stats()
        alert_rules_check_system(values={
            "active_connections": stats["active_connections"],
            "api_response_time_ms": stats["api_response_time_ms"],
            "ws_response_time_ms": stats["ws_response_time_ms"],
        })
        done["projects"] = project_metrics_publish()
    return done


def services_check() -> dict:
    """Check every component; publish service_health and integration_status, component_health for
    each component whose status changed; alert on missing workers; update the system's health."""
    from .. import checks

    try:
        known = len(state.workers_seen([], time.time()))
    except Exception:
        known = 0
    result = checks.run_all(known_workers=known)
    components = result["services"] + result["integrations"]
    changes = state.components_swap({c["name"]: c["status"] for c in components})
    state.services_set(result)
    publish_on_commit(catalog.ServiceHealth(services=result["services"]))
    publish_on_commit(catalog.IntegrationStatus(integrations=result["integrations"]))
    by_name = {c["name"]: c for c in components}
    for name, (previous, status) in changes.items():
        if previous is None:
            continue  # first seen: service_health / integration_status carry it, it is not a change
        item = by_name[name]
        publish_on_commit(catalog.ComponentHealth(component=name, status=status, metrics={
            "label": item["label"], "previous": previous, "latency_ms": item["latency_ms"],
            "detail": item["detail"], "checked_at": item["checked_at"],
        }))
    workers_check(workers=result["workers"], celery_reachable=not by_name["celery"].get("error"))
    health_update()
    return result


def workers_check(*, workers: list[dict], celery_reachable: bool = True) -> None:
    """A worker that answered before and has not answered for the rule's duration is missing (a
    worker that shut down cleanly said goodbye: monitoring.signals forgets it)."""
    if not celery_reachable:
        return  # the control channel itself failed: the Redis/broker alerts say so
    now = time.time()
    seen = state.workers_seen([w["name"] for w in workers], now)
    rule, exists = _rule_for(AlertRule.Kind.WORKER_MISSING)
    answering = {w["name"] for w in workers}
    for name, last in seen.items():
        subject = f"worker:{name}"
        if name in answering:
            alert_condition_clear(rule_kind=AlertRule.Kind.WORKER_MISSING, subject=subject,
                                  message=f"{name} answers again.")
            continue
        missing_for = now - last
        hold = rule.duration_seconds if rule else 30
        if rule is not None and missing_for >= hold:
            alert_raise(rule=rule, rule_kind=rule.kind, subject=subject, title=f"Worker missing: {name}",
                        message=f"{name} has not answered for {missing_for:.0f} s.", source=name,
                        alert_type="worker", metadata={"worker": name, "last_seen": last})


def jobs_check(*, now: float | None = None) -> dict:
    """Alert on jobs that failed recently (once per job) and on running jobs that have reported no
    progress for the stall rule's multiple of their usual interval (resolved when they move or end).
    Every kind of job is read through the registry (mlops_dashboard.jobs.kinds()); each job's alert
    follows its project's rule of the kind (or the global one) and belongs to its project."""
    now = now or time.time()
    lookback = timezone.now() - timedelta(minutes=30)
    stall_rules = _RulesByProject(AlertRule.Kind.JOB_STALLED)
    running_subjects, counts = set(), {"failed": 0, "stalled": 0}
    for kind in jobs.kinds():
        try:
            if kind.failed_rule is not None:
                counts["failed"] += _failed_jobs_alert(kind, lookback)
            if kind.progress_fields:
                counts["stalled"] += _stalled_jobs_alert(kind, stall_rules, now, running_subjects)
        except Exception:
            logger.exception("job checks of %s failed", kind.key)
    # Jobs that stopped running (ended or reaped): forget their tracking, clear their stall alerts.
    stalled = Alert.objects.filter(rule__kind=AlertRule.Kind.JOB_STALLED).exclude(status=Alert.Status.RESOLVED)
    for alert in stalled.select_related("rule"):
        if alert.subject not in running_subjects:
            alert_condition_clear(rule=alert.rule, subject=alert.subject, message="The job is no longer running.")
    state.jobs_forget_except(running_subjects)
    return counts


class _RulesByProject:
    """The rule of one kind that applies to each project's jobs, read once per project and check."""

    def __init__(self, rule_kind: str):
        self.rule_kind = rule_kind
        self.cache: dict = {}

    def __call__(self, project_id):
        if project_id not in self.cache:
            self.cache[project_id] = _rule_for(self.rule_kind, project_id)[0]
        return self.cache[project_id]


def _stalled_jobs_alert(kind: jobs.JobKind, stall_rules: _RulesByProject, now: float, running_subjects: set) -> int:
    stalled = 0
    for job in kind.rows(status=JobStatus.RUNNING):
        subject = kind.subject(job)
        running_subjects.add(subject)
        marker = "|".join(str(getattr(job, f, "")) for f in kind.progress_fields)
        stall_rule = stall_rules(getattr(job, "project_id", None))
        if stall_rule is None:
            continue
        multiple = stall_rule.threshold or 3.0
        track = state.job_progress_track(subject, marker, now, settings.MONITORING_STALL_DEFAULT_INTERVAL)
        silent = now - track["changed_at"]
        if silent >= max(stall_rule.duration_seconds, multiple * track["usual"]):
            step = kind.step_text(job)
            alert_raise(
                rule=stall_rule, rule_kind=stall_rule.kind, subject=subject, alert_type="job",
                title=f"Stalled: {kind.label(job)}", source=kind.key, value=round(silent, 1),
                message=f"No progress for {silent:.0f} s (usually every {track['usual']:.0f} s); "
                        f"last step reported: “{step}” at {job.progress:.0f}%.",
                metadata={"job": subject, "last_step": step, "usual_interval": round(track["usual"], 1)},
                project=getattr(job, "project_id", None),
            )
            stalled += 1
        else:
            alert_condition_clear(rule=stall_rule, subject=subject, message="Progress resumed.")
    return stalled


def _failed_jobs_alert(kind: jobs.JobKind, since) -> int:
    subjects = {kind.subject(job): job for job in kind.rows(status=JobStatus.FAILED, finished_at__gte=since)}
    if not subjects:
        return 0
    # Once per job, ever (whichever rule of the kind raised it): a resolved alert stays resolved.
    keys = [*AlertRule.objects.filter(kind=kind.failed_rule).values_list("slug", flat=True), f"kind:{kind.failed_rule}"]
    already = set(Alert.objects.filter(rule_key__in=keys, subject__in=list(subjects)).values_list("subject", flat=True))
    rules = _RulesByProject(kind.failed_rule)
    raised = 0
    for subject, job in subjects.items():
        rule = rules(getattr(job, "project_id", None))
        if subject not in already and rule is not None:
            job_failed_alert(kind, job, rule=rule)
            raised += 1
    return raised


def job_failed_alert(kind: jobs.JobKind, job, *, rule: AlertRule | None = None) -> Alert | None:
    """Open (or repeat) the failed alert of one job of a registered kind: what the periodic check
    raises, and what the app that failed the job asks for at once (through jobs.job_failed)."""
    if kind.failed_rule is None:
        return None
    metadata = {"job": kind.subject(job), "error_code": None, "created_by_id": kind.creator_id(job),
                **(kind.failure_metadata(job) if kind.failure_metadata else {})}
    code = metadata["error_code"]
    return alert_raise(rule=rule, rule_kind=kind.failed_rule, subject=kind.subject(job), alert_type="job",
                       source=kind.key, title=f"Failed: {kind.label(job)}", project=getattr(job, "project_id", None),
                       message=(f"[{code}] " if code else "") + ((job.error or "").strip()[:900] or "The job failed."),
                       metadata=metadata)
