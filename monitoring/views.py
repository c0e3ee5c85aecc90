"""Pages: the dashboard home, Monitoring (charts, alerts, anomalies, rules) and System (components)."""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from mlops_dashboard import permissions
from mlops_dashboard.models import Role
from mlops_dashboard.projects import current_project
from mlops_dashboard.storage import storage_report

from datasets import selectors as dataset_selectors

from . import selectors, services, views_silences
from .forms import AlertRuleForm
from .models import METRICS, Alert, AlertRule, Anomaly
from .views_channels import channels_context


def _api_urls() -> dict:
    return {
        "alerts": reverse("alert-list"),
        "acknowledge": reverse("alert-acknowledge", args=[0]),
        "resolve": reverse("alert-resolve", args=[0]),
        "metrics": reverse("monitoring-metrics"),
        "system": reverse("monitoring-system"),
        "services": reverse("monitoring-services"),
        "activity": reverse("activity-list"),
    }


@require_GET
def dashboard(request):
    project = current_project(request)
    summary = selectors.dashboard_summary(user=request.user, project=project)
    context = {
        "nav": "dashboard",
        **summary,
        "thresholds": settings.MONITORING_THRESHOLDS,
        "page_data": {
            "api": _api_urls(),
            "alertItemUrl": reverse("monitoring:alert-item", args=[0]),
            "hostsUrl": reverse("monitoring:hosts"),
            "activityUrl": reverse("activity-feed"),
            # Events of the user's other projects reach this socket too: the page keeps this one's.
            "projectId": project.pk if project else None,
            "jobItemUrl": reverse("monitoring:job-item", args=["kind", 0]),
            "thresholds": {k: list(v) for k, v in settings.MONITORING_THRESHOLDS.items()},
            "predictionsTotal": summary["predictions_total"],
            "predictionsPerMinute": summary["predictions_per_minute"],
            "model": {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in summary["model"].items()}
            if summary["model"] else None,
            "health": summary["health"].get("level"),
        },
    }
    return render(request, "dashboard.html", context)


def _rule_form_allowed(user, project) -> str:
    """Why the user may not make a rule here ("" when they may): a maintainer of the current
    project makes its rules, staff also global ones."""
    if permissions.is_admin(user):
        return ""
    if project is None:
        return "Alert rules are made by a project's maintainers, or by an admin (staff) for every project."
    if permissions.has_role(user, project, Role.MAINTAINER):
        return ""
    return permissions.denial(user, "manage", project)


def _index_context(request, form=None, editing=None) -> dict:
    user, project = request.user, current_project(request)
    if form is None:
        editing = None
        rule_id = request.GET.get("rule")
        if rule_id and rule_id.isdigit():
            editing = permissions.visible(AlertRule.objects.filter(pk=int(rule_id)), user, include_global=True).first()
            if editing is not None and not permissions.can(user, _rule_action(editing), editing):
                editing = None
        initial = {"kind": "metric", "enabled": True, "scope": "project" if project else "global"}
        form = AlertRuleForm(instance=editing, user=user, project=project) if editing else \
            AlertRuleForm(initial=initial, user=user, project=project)
    alerts = selectors.alerts_unresolved(limit=100, user=user, project=project)
    resolved = list(selectors.alerts(status="resolved", limit=20, user=user, project=project))
    return {
        "nav": "monitoring",
        "project": project,
        "alerts": alerts,
        "resolved_alerts": resolved,
        "anomalies": selectors.anomalies_recent(limit=50, user=user, project=project),
        "rules": selectors.alert_rules(user=user, project=project),
        "form": form,
        "form_denied": "" if editing else _rule_form_allowed(user, project),
        "editing": editing,
        "hosts": selectors.latest_metrics(),
        "health": selectors.health_current(),
        **channels_context(request, project=project),
        **views_silences.silences_context(request),
        "page_data": {
            "api": _api_urls(),
            **views_silences.silence_page_data(),
            "minutes": 60,
            "alertRowUrl": reverse("monitoring:alert-row", args=[0]),
            "anomalyRowUrl": reverse("monitoring:anomaly-row", args=[0]),
            "projectId": project.pk if project else None,
            "interval": settings.MONITORING_INTERVAL,
            "metrics": {k: {"label": v[0], "unit": v[1]} for k, v in METRICS.items()},
            "thresholds": {k: list(v) for k, v in settings.MONITORING_THRESHOLDS.items()},
        },
    }


@require_GET
def index(request):
    return render(request, "monitoring/index.html", _index_context(request))


@require_GET
def system(request):
    result = _services_latest()
    context = {
        "nav": "system",
        "services": result.get("services", []),
        "integrations": result.get("integrations", []),
        "workers": result.get("workers", []),
        "checked_at": result.get("checked_at"),
        "health": selectors.health_current(),
        "hosts": selectors.latest_metrics(),
        # Staff only: what each kind of row and file weighs (cached: mlops_dashboard.storage).
        "storage": storage_report() if request.user.is_staff else None,
        "page_data": {
            "api": _api_urls(),
            "interval": settings.MONITORING_CHECK_INTERVAL,
            "hostsUrl": reverse("monitoring:hosts"),
            "componentsUrl": reverse("monitoring:system-components", args=["group"]),
            "workersUrl": reverse("monitoring:system-workers"),
        },
    }
    return render(request, "monitoring/system.html", context)


def _rule_action(rule) -> str:
    return "change" if rule.project_id is None else "manage"


def _visible_rule(request, pk: int) -> AlertRule:
    return permissions.get_visible(AlertRule.objects.all(), request.user, pk=pk)


def _save_rule(request, form, rule=None):
    if not form.is_valid():
        return None
    try:
        if rule is None:
            return services.alert_rule_create(user=request.user, project=form.project_for_create(),
                                              **form.service_fields())
        return services.alert_rule_update(rule=rule, user=request.user, **form.service_fields())
    except ValidationError as exc:
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
        return None


@require_POST
def rule_create(request):
    form = AlertRuleForm(request.POST, user=request.user, project=current_project(request))
    rule = _save_rule(request, form)
    if rule is None:
        return render(request, "monitoring/index.html", _index_context(request, form=form), status=400)
    messages.success(request, f"Alert rule “{rule.name}” created.")
    return redirect(reverse("monitoring:index") + "#rules")


@require_POST
def rule_update(request, pk: int):
    rule = _visible_rule(request, pk)
    permissions.authorize(request.user, _rule_action(rule), rule)  # before the form says anything
    form = AlertRuleForm(request.POST, instance=AlertRule.objects.get(pk=pk), user=request.user,
                         project=current_project(request))
    saved = _save_rule(request, form, rule=rule)
    if saved is None:
        return render(request, "monitoring/index.html", _index_context(request, form=form, editing=rule), status=400)
    messages.success(request, f"Alert rule “{saved.name}” saved.")
    return redirect(reverse("monitoring:index") + "#rules")


@require_POST
def rule_toggle(request, pk: int):
    rule = _visible_rule(request, pk)
    services.alert_rule_set_enabled(rule=rule, enabled=not rule.enabled, user=request.user)
    messages.success(request, f"Alert rule “{rule.name}” {'enabled' if rule.enabled else 'disabled'}.")
    return redirect(reverse("monitoring:index") + "#rules")


@require_GET
def dataset_anomalies_result(request, dataset_id: int):
    """The result of a dataset's latest anomaly detection (a fragment for static/js/pages/dataset_anomalies.js)."""
    try:
        limit = min(50, max(1, int(request.GET.get("limit", 20))))
    except ValueError:
        limit = 20
    dataset = dataset_selectors.dataset_get(dataset_id)
    if dataset is None or not permissions.can_see(request.user, dataset):
        raise Http404("No such dataset.")
    detection = selectors.dataset_anomaly_detection_latest(dataset=dataset)
    return render(request, "monitoring/includes/dataset_anomalies_result.html", {"detection": detection, "limit": limit})


@require_GET
def alert_row(request, pk: int):
    """One row of the Monitoring page's alerts table (a fragment for static/js/pages/monitoring.js)."""
    alert = permissions.get_visible(Alert.objects.select_related("acknowledged_by", "resolved_by"), request.user, pk=pk)
    return render(request, "monitoring/includes/alert_row.html", {"alert": alert})


@require_GET
def alert_item(request, pk: int):
    """One alert of the dashboard's compact list (a fragment for static/js/pages/dashboard.js)."""
    return render(request, "monitoring/includes/alert_item.html", {"alert": permissions.get_visible(Alert.objects.all(), request.user, pk=pk)})


@require_GET
def anomaly_row(request, pk: int):
    """One row of the Monitoring page's anomalies table (a fragment for static/js/pages/monitoring.js)."""
    anomaly = permissions.get_visible(Anomaly.objects.all(), request.user, pk=pk)
    return render(request, "monitoring/includes/anomaly_row.html", {"anomaly": anomaly})


@require_GET
def hosts(request):
    """Each host's bars (a fragment for the dashboard's and the System page's system_metrics)."""
    return render(request, "monitoring/includes/host_list.html", {"hosts": selectors.latest_metrics()})


@require_GET
def job_item(request, kind: str, pk: int):
    """One job of the dashboard's running jobs, in any state (a fragment for static/js/pages/dashboard.js)."""
    job = selectors.job_row(kind=kind, pk=pk, user=request.user)
    if job is None:
        raise Http404("No such job.")
    return render(request, "monitoring/includes/job_item.html", {"job": job})


def _services_latest() -> dict:
    return selectors.services_latest() or {"services": [], "integrations": [], "workers": [], "checked_at": None}


@require_GET
def system_components(request, group: str):
    """The rows of the System page's services or integrations table (a fragment for static/js/pages/system.js)."""
    if group not in ("services", "integrations"):
        raise Http404("No such group.")
    context = {"group": group, "components": _services_latest().get(group, [])}
    return render(request, "monitoring/includes/component_rows.html", context)


@require_GET
def system_workers(request):
    """The System page's Celery workers (a fragment for static/js/pages/system.js)."""
    return render(request, "monitoring/includes/worker_list.html", {"workers": _services_latest().get("workers", [])})
