"""Pages: Telemetry (every source of the current project, live) and a source's page (a live chart per
metric, anomalies, the registry forms), with the fragments their live updates morph in."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from mlops_dashboard import permissions
from mlops_dashboard.projects import current_project

from . import selectors, services
from .forms import MetricForm, SourceForm
from .models import Metric, Source

# The ranges of the source page's picker: label → seconds.
RANGES = [("15m", "15 min", 15 * 60), ("1h", "1 h", 3600), ("24h", "24 h", 86_400), ("7d", "7 d", 7 * 86_400)]
DEFAULT_RANGE = "1h"
SPARKLINE_SECONDS = 3600


def _sources(request, project):
    if project is None:
        return []
    return list(selectors.sources_list(request.user, project=project))


def _source(request, pk: int) -> Source:
    """A source the user may see, by id (another project's: 404, as if it did not exist)."""
    source = selectors.source_get(request.user, pk)
    if source.pk != pk:  # source_get also takes names: a source named "12" is not source 12
        raise Http404("No such source.")
    return source


def _card_context(source: Source, now) -> dict:
    return {"source": source, "status": source.status_at(now), "metrics": list(source.metrics.all())}


@require_GET
def index(request):
    project = current_project(request)
    sources = _sources(request, project)
    now = timezone.now()
    cards = [_card_context(s, now) for s in sources]
    context = {
        "nav": "telemetry",
        "project": project,
        "cards": cards,
        "live_count": sum(1 for c in cards if c["status"] == "live"),
        "ingest_url": request.build_absolute_uri("/api/telemetry/"),
        "page_data": {
            "projectId": project.pk if project else None,
            "cardUrl": reverse("telemetry:source-card", args=[0]),
            "seriesUrl": reverse("api-telemetry-series"),
            "sparklineSeconds": SPARKLINE_SECONDS,
        },
    }
    return render(request, "telemetry/index.html", context)


@require_GET
def source_card(request, pk: int):
    """One source's card of the Telemetry page (a fragment for static/js/pages/telemetry.js)."""
    source = _source(request, pk)
    return render(request, "telemetry/includes/source_card.html", _card_context(source, timezone.now()))


def _detail_context(request, source: Source, *, source_form=None, metric_forms=None) -> dict:
    user = request.user
    fresh = Source.objects.get(pk=source.pk)  # the forms edit a copy: a failed save leaves `source` as stored
    metrics = list(fresh.metrics.order_by("name", "id"))
    if source_form is None:
        source_form = SourceForm(instance=fresh)
    bound = {f.instance.pk: f for f in (metric_forms or [])}
    forms_ = [bound.get(m.pk) or MetricForm(instance=m) for m in metrics]
    now = timezone.now()
    end = now
    start = end - timedelta(seconds=dict((k, s) for k, _, s in RANGES)[DEFAULT_RANGE])
    initial = {}
    for metric in metrics:
        metric.source = fresh
        try:  # as the series API answers the same request (the chart asks it for the other ranges)
            initial[str(metric.pk)] = selectors.series_chart(metric, start=start, end=end).as_json()
        except selectors.TooManyRows:  # not within an hour at auto resolution; the chart asks the API then
            pass
    return {
        "nav": "telemetry",
        "source": fresh,
        "status": fresh.status_at(now),
        "metrics": metrics,
        "ranges": RANGES,
        "default_range": DEFAULT_RANGE,
        "source_form": source_form,
        "metric_forms": forms_,
        "edit_denied": permissions.tooltip(user, "change", fresh),
        "detect_denied": permissions.tooltip(user, "create", fresh.project),
        "page_data": {
            "sourceId": fresh.pk,
            "source": fresh.name,
            "projectId": fresh.project_id,
            "silentAfterMs": fresh.silent_after_seconds() * 1000,
            "lastSeenMs": selectors.epoch_ms(fresh.last_seen) if fresh.last_seen else None,
            "metrics": [{"id": m.pk, "name": m.name, "unit": m.unit,
                         "lastMs": selectors.epoch_ms(m.last_timestamp) if m.last_timestamp else None}
                        for m in metrics],
            "ranges": {k: s for k, _, s in RANGES},
            "defaultRange": DEFAULT_RANGE,
            "initial": {"start": selectors.epoch_ms(start), "end": selectors.epoch_ms(end), "series": initial},
            "seriesUrl": reverse("api-telemetry-series"),
            "detectUrl": "/api/anomaly/detect/",
            "anomaliesUrl": reverse("monitoring:telemetry-anomalies", args=[fresh.pk]),
        },
    }


@require_GET
def source_detail(request, pk: int):
    source = _source(request, pk)
    return render(request, "telemetry/source.html", _detail_context(request, source))


def _save(form, save) -> bool:
    if not form.is_valid():
        return False
    try:
        save(**form.service_fields())
    except ValidationError as exc:
        if hasattr(exc, "error_dict"):
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            form.add_error(None, exc.messages)
        return False
    return True


@require_POST
def source_update(request, pk: int):
    source = _source(request, pk)
    permissions.authorize(request.user, "change", source)  # before the form says anything
    form = SourceForm(request.POST, instance=Source.objects.get(pk=pk))
    if not _save(form, lambda **fields: services.source_update(source=source, user=request.user, **fields)):
        return render(request, "telemetry/source.html", _detail_context(request, source, source_form=form), status=400)
    messages.success(request, f"Source “{source.name}” saved.")
    return redirect(reverse("telemetry:source", args=[pk]) + "#registry")


@require_POST
def metric_update(request, pk: int, metric_id: int):
    source = _source(request, pk)
    permissions.authorize(request.user, "change", source)
    metric = source.metrics.filter(pk=metric_id).first()
    if metric is None:
        raise Http404("No such metric of this source.")
    form = MetricForm(request.POST, instance=Metric.objects.get(pk=metric.pk))
    if not _save(form, lambda **fields: services.metric_update(metric=metric, user=request.user, **fields)):
        return render(request, "telemetry/source.html", _detail_context(request, source, metric_forms=[form]), status=400)
    messages.success(request, f"Metric “{metric.name}” saved.")
    return redirect(reverse("telemetry:source", args=[pk]) + f"#metric-{metric.pk}")
