"""Service and job checks: the components, the workers, failed and stalled jobs."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from mlops_dashboard.events import catalog, publish_on_commit
from mlops_dashboard.jobs import JobStatus

from .. import state
from ..models import Alert, AlertRule
from .alerts import _rule_for, alert_condition_clear, alert_raise, alert_rules_check_system
from .health import health_update, serving_figures

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
            **serving_figures(),
        })
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


def _job_sources():
    """(subject prefix, model, progress-marker fields, label, failed rule kind, detail url) of every
    kind of job that exists in this installation."""
    from django.apps import apps

    sources = []
    from datasets.models import ProcessingJob

    sources.append(("processing_job", ProcessingJob, ("progress", "current_step"), AlertRule.Kind.JOB_FAILED))
    try:
        sources.append(("training_job", apps.get_model("training", "TrainingJob"),
                        ("progress", "stage", "current_epoch", "message"), AlertRule.Kind.TRAINING_FAILED))
    except LookupError:
        pass
    try:
        sources.append(("pipeline_run", apps.get_model("pipelines", "PipelineRun"),
                        ("progress", "current_step", "message"), AlertRule.Kind.PIPELINE_FAILED))
    except LookupError:
        pass
    return sources


def _job_label(prefix: str, job) -> str:
    if prefix == "processing_job":
        return f"{job.get_operation_display()} job #{job.pk} on {job.dataset.name}"
    if prefix == "training_job":
        return f"Training job #{job.pk} ({job.name})"
    if prefix == "pipeline_run":
        pipeline = getattr(job, "pipeline", None)
        return f"Pipeline run #{job.pk}" + (f" of {pipeline}" if pipeline else "")
    return f"Job #{job.pk}"


def job_step_text(job) -> str:
    """The last step a job reported, in words (pipeline runs keep the index of their current step)."""
    step = getattr(job, "current_step", None)
    if isinstance(step, int) and not isinstance(step, bool):
        steps = getattr(job, "steps", None) or []
        kind = steps[step].get("kind", "") if 0 <= step < len(steps) and isinstance(steps[step], dict) else ""
        text = f"step {step + 1} of {len(steps)}" + (f" ({kind.replace('_', ' ')})" if kind else "")
        message = getattr(job, "message", "")
        return f"{text}: {message}" if message else text
    for name in ("current_step", "message", "stage"):
        value = getattr(job, name, "")
        if value:
            return str(value).replace("_", " ") if name == "stage" else str(value)
    return job.status


def jobs_check(*, now: float | None = None) -> dict:
    """Alert on jobs that failed recently (once per job) and on running jobs that have reported no
    progress for the stall rule's multiple of their usual interval (resolved when they move or end)."""
    now = now or time.time()
    lookback = timezone.now() - timedelta(minutes=30)
    stall_rule, _ = _rule_for(AlertRule.Kind.JOB_STALLED)
    multiple = (stall_rule.threshold if stall_rule and stall_rule.threshold else 3.0)
    minimum = stall_rule.duration_seconds if stall_rule else 60
    running_subjects, counts = set(), {"failed": 0, "stalled": 0}
    for prefix, model, marker_fields, failed_kind in _job_sources():
        try:
            if failed_kind is not None:
                counts["failed"] += _failed_jobs_alert(prefix, model, failed_kind, lookback)
            if stall_rule is None:
                continue
            select = ("dataset",) if prefix == "processing_job" else ()
            for job in model.objects.filter(status=JobStatus.RUNNING).select_related(*select):
                subject = f"{prefix}.{job.pk}"
                running_subjects.add(subject)
                marker = "|".join(str(getattr(job, f, "")) for f in marker_fields)
                track = state.job_progress_track(subject, marker, now, settings.MONITORING_STALL_DEFAULT_INTERVAL)
                silent = now - track["changed_at"]
                allowed = max(minimum, multiple * track["usual"])
                if silent >= allowed:
                    step = job_step_text(job)
                    alert_raise(
                        rule=stall_rule, rule_kind=stall_rule.kind, subject=subject, alert_type="job",
                        title=f"Stalled: {_job_label(prefix, job)}", source=prefix, value=round(silent, 1),
                        message=f"No progress for {silent:.0f} s (usually every {track['usual']:.0f} s); "
                                f"last step reported: “{step}” at {job.progress:.0f}%.",
                        metadata={"job": subject, "last_step": step, "usual_interval": round(track["usual"], 1)},
                    )
                    counts["stalled"] += 1
                else:
                    alert_condition_clear(rule=stall_rule, subject=subject, message="Progress resumed.")
        except Exception:
            logger.exception("job checks of %s failed", prefix)
    # Jobs that stopped running (ended or reaped): forget their tracking, clear their stall alerts.
    if stall_rule is not None:
        for alert in Alert.objects.filter(rule=stall_rule).exclude(status=Alert.Status.RESOLVED):
            if alert.subject not in running_subjects:
                alert_condition_clear(rule=stall_rule, subject=alert.subject, message="The job is no longer running.")
    state.jobs_forget_except(running_subjects)
    return counts


def _failed_jobs_alert(prefix: str, model, kind: str, since) -> int:
    rule, _ = _rule_for(kind)
    if rule is None:
        return 0
    failed = model.objects.filter(status=JobStatus.FAILED, finished_at__gte=since)
    if prefix == "processing_job":
        failed = failed.select_related("dataset")
    subjects = {f"{prefix}.{job.pk}": job for job in failed}
    if not subjects:
        return 0
    # Once per job, ever: a resolved alert about a failed job stays resolved.
    already = set(Alert.objects.filter(rule_key=rule.slug, subject__in=list(subjects)).values_list("subject", flat=True))
    raised = 0
    for subject, job in subjects.items():
        if subject in already:
            continue
        error = (getattr(job, "error", "") or "").strip()
        code = getattr(job, "error_code", "")
        alert_raise(rule=rule, rule_kind=kind, subject=subject, alert_type="job", source=prefix,
                    title=f"Failed: {_job_label(prefix, job)}",
                    message=(f"[{code}] " if code else "") + (error[:900] or "The job failed."),
                    metadata={"job": subject, "error_code": code or None})
        raised += 1
    return raised
