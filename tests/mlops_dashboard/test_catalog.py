"""The event catalog: every event type has an example here, validated against its declaration."""

import json
from pathlib import Path

import pytest

from mlops_dashboard.events import catalog
from mlops_dashboard.events.catalog import REGISTRY, EventError, build
from mlops_dashboard.events.docs import render

ALERT = {"id": 1, "title": "CPU high", "message": "CPU above 90% for 1 min", "alert_type": "resource",
         "priority": "high", "source": "host-a", "status": "open", "actions": ["acknowledge", "resolve"]}
ACTIVITY = {"id": 3, "title": "Dataset uploaded", "description": "titanic.csv", "user": "alice",
            "action_type": "upload", "status": "success", "severity_level": "info", "duration": 1.5, "metadata": {}}

# One valid example per event type. A new catalog entry without an example fails test_every_event_has_an_example.
EXAMPLES = {
    "pipeline_created": dict(project_id=1, pipeline_id=1, name="nightly"),
    "pipeline_updated": dict(project_id=1, pipeline_id=1, name="nightly"),
    "pipeline_deleted": dict(project_id=1, pipeline_id=1, name="nightly"),
    "pipeline_status": dict(project_id=1, pipeline_id=1, run_id=2, status="running", data={"step": "train"}),
    "pipeline_progress": dict(project_id=1, pipeline_id=1, run_id=2, progress=40.0, status="running", current_step="train_model",
                              step_index=2, total_steps=5),
    "pipeline_completed": dict(project_id=1, pipeline_id=1, run_id=2, status="succeeded", message="done", duration=12.5),
    "pipeline_failed": dict(project_id=1, pipeline_id=1, run_id=2, error="gate failed", failed_step="evaluate"),
    "pipeline_step": dict(project_id=1, pipeline_id=1, run_id=2, step_index=3, kind="evaluate", status="failed",
                          log=["accuracy 0.91 < 0.95"], output={"metric": "accuracy", "value": 0.91},
                          error="quality gate failed"),
    "upload_progress": dict(filename="a.csv", bytes_uploaded=10, total_bytes=100, progress_percent=10.0,
                            upload_speed=1e6, estimated_time_remaining=0.5, user_id=1, upload_key="k"),
    "file_validated": dict(project_id=1, status="success", dataset_id=1, filename="a.csv", rows=10, columns=3, file_size=100,
                           target_column="y", summary={}, validation_time=0.1, user_id=1),
    "dataset_created": dict(project_id=1, dataset_id=1, name="titanic"),
    "dataset_updated": dict(project_id=1, dataset_id=1, name="titanic", status="ready"),
    "dataset_deleted": dict(project_id=1, dataset_id=1, name="titanic"),
    "dataset_processed": dict(project_id=1, dataset_id=1, status="ready", data={"rows": 10}),
    "quality_assessment": dict(project_id=1, dataset_id=1, quality_score=87.5, stats={"completeness": 90}),
    "job_progress": dict(project_id=1, job_id=4, dataset_id=1, progress=50.0, status="running", current_step="dedupe"),
    "job_completed": dict(project_id=1, job_id=4, dataset_id=1, status="succeeded", duration=2.0, result={"dataset_id": 5}),
    "training_started": dict(project_id=1, job_id=7, model_name="titanic-sgd", dataset_id=1, total_epochs=10),
    "training_progress": dict(project_id=1, job_id=7, progress=55.0, stage="model_training", current_stage="epoch 5 of 10",
                              estimated_time_remaining=4.2, current_epoch=5, total_epochs=10, current_loss=0.43,
                              live_accuracy=0.81, message="epoch 5"),
    "training_completed": dict(project_id=1, job_id=7, model_id=3, final_accuracy=0.83, validation_score=0.81, training_time=9.5,
                               model_size=20480, total_epochs=10, rows_used=891, rows_total=891,
                               sampling="all", message="done"),
    "training_failed": dict(project_id=1, job_id=7, error="target is constant", error_code="INVALID_TARGET",
                            stage_failed="data_preparation", progress_when_failed=3.0, suggestions=["pick another"]),
    "model_deployed": dict(project_id=1, model_id=3, model_name="titanic-sgd", model_version=2, model_accuracy=0.81,
                           deployment_timestamp="2026-11-21T23:00:00.000000Z", message="v2 serving"),
    "model_status_change": dict(project_id=1, model_id=3, status="active", health_score=1.0, last_prediction=None),
    "prediction_volume": dict(project_id=1, total_predictions=100, predictions_per_minute=12.0, milestone_reached=100,
                              message="100 predictions"),
    "system_metrics": dict(host="a", cpu_percent=10.0, memory_percent=20.0, disk_percent=30.0, active_connections=2,
                           current_health="healthy", api_response_time_ms=12.0, ws_response_time_ms=None),
    "project_metrics": dict(project_id=1, current_accuracy=0.9, predictions_per_minute=3.0, predictions_total=40,
                            model={"id": 3, "name": "titanic-sgd", "version": 2}),
    "health_change": dict(current_health="warning", previous_health="healthy", reason="CPU 92%", metrics={},
                          recommended_action="add a worker"),
    "system_alert": dict(alert=ALERT),
    "notification_sent": dict(notification_id=3, kind="firing", alert_id=9, channel_id=2, channel_name="ops email",
                              attempt=1, project_id=1),
    "notification_failed": dict(notification_id=3, kind="firing", alert_id=9, channel_id=2, channel_name="ops email",
                                attempt=2, error="A Connection error occurred sending to ***.", retrying=True,
                                retry_in=60.0),
    "anomaly_detected": dict(source="metrics", entity="host-a", metric="cpu_percent", value=99.0,
                             anomaly_score=8.1, severity="high"),
    "anomaly_detection_progress": dict(project_id=1, detection_id=3, progress=40.0, current_step="Scoring"),
    "anomaly_detection_completed": dict(project_id=1, detection_id=3, status="succeeded", entity="press-07",
                                        n_rows=1440, n_flagged=12),
    "telemetry_points": dict(source_id=4, source="press-07", points=[["temperature", 1764669600000, 71.3]],
                             truncated=False),
    "telemetry_import_progress": dict(project_id=1, import_id=2, filename="history.csv", status="running",
                                      progress=40.0, rows=1000, points=0, user_id=1),
    "telemetry_import_completed": dict(project_id=1, import_id=2, filename="history.csv", status="succeeded", rows=1000,
                                       points=3000, duration=1.5, start="2026-12-01T00:00:00+00:00",
                                       end="2026-12-02T00:00:00+00:00", user_id=1),
    "performance_metrics": dict(cpu_usage=1.0, memory_usage=2.0, disk_usage=3.0, network_io={"sent": 1}),
    "chart_data": dict(resource={}, network={}, performance={}),
    "service_health": dict(services=[{"name": "redis", "status": "ok"}]),
    "component_health": dict(component="redis", status="ok", metrics={"latency_ms": 0.3}),
    "integration_status": dict(integrations=[]),
    "activity_update": dict(activity=ACTIVITY),
    "projects_changed": dict(user_id=1, projects=[{"id": 1, "name": "Default", "slug": "default", "role": "editor"}]),
    "pong": dict(ts=1, server_ts=2.0),
    "error": dict(code="bad_message", message="not JSON"),
}

ISSUE_FIELDS = {  # the minimum field list each event must carry, from the backbone issue
    "pipeline_progress": "pipeline_id run_id progress status current_step step_index total_steps",
    "upload_progress": "filename bytes_uploaded total_bytes progress_percent upload_speed estimated_time_remaining",
    "file_validated": "status dataset_id filename rows columns file_size target_column summary validation_time error",
    "training_progress": "job_id progress stage current_stage estimated_time_remaining current_epoch total_epochs "
                         "current_loss live_accuracy message",
    "training_failed": "job_id error error_code stage_failed progress_when_failed suggestions",
    # Issue 14: a project's model figures left system_metrics (on `dashboard`) for project_metrics.
    "system_metrics": "host cpu_percent memory_percent disk_percent active_connections current_health "
                      "api_response_time_ms ws_response_time_ms",
    "project_metrics": "project_id current_accuracy predictions_per_minute",
    "activity_update": "activity",
    "pong": "ts server_ts",
}


def test_every_event_has_an_example():
    assert set(EXAMPLES) == set(REGISTRY)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_example_builds_and_round_trips_as_json(name):
    event = build(name, **EXAMPLES[name])
    payload = event.payload()
    assert json.loads(json.dumps(payload)) == payload
    assert set(payload) <= {f for f, _, _ in catalog.field_docs(type(event))}


@pytest.mark.parametrize("name", sorted(ISSUE_FIELDS))
def test_events_declare_the_promised_fields(name):
    declared = {f for f, _, _ in catalog.field_docs(REGISTRY[name])}
    assert set(ISSUE_FIELDS[name].split()) <= declared


def test_unknown_fields_are_refused():
    with pytest.raises(TypeError):
        build("dataset_created", dataset_id=1, name="x", colour="red")


def test_wrong_types_are_refused_with_a_clear_message():
    with pytest.raises(EventError, match="dataset_created.dataset_id must be integer"):
        build("dataset_created", project_id=1, dataset_id="1", name="x")
    with pytest.raises(EventError, match="status must be one of"):
        build("pipeline_status", project_id=1, pipeline_id=1, run_id=1, status="exploded", data={})
    with pytest.raises(EventError):
        build("job_progress", project_id=1, job_id=True, dataset_id=1, progress=1.0, status="running", current_step="x")


def test_unknown_event_names_are_refused():
    with pytest.raises(EventError, match="not an event in the catalog"):
        build("training_complete", job_id=1)


def test_topics_are_filled_from_fields_and_skip_missing_ones():
    event = build("file_validated", **{**EXAMPLES["file_validated"], "user_id": None})
    assert event.topic_names() == ["project.1", "dataset.1"]
    assert build("training_progress", **EXAMPLES["training_progress"]).topic_names() == ["project.1", "training_job.7"]
    # The first alternative whose fields are set: a project's alert, else the dashboard.
    assert build("system_alert", alert=ALERT, project_id=4).topic_names() == ["project.4"]
    assert build("system_alert", alert=ALERT).topic_names() == ["dashboard"]
    assert build("activity_update", activity=ACTIVITY).topic_names() == ["staff"]
    assert build("projects_changed", **EXAMPLES["projects_changed"]).topic_names() == ["user.1"]


def test_optional_fields_left_empty_are_omitted_on_the_wire():
    payload = build("job_completed", **EXAMPLES["job_completed"]).payload()
    assert "error" not in payload and payload["result"] == {"dataset_id": 5}


def test_docs_events_md_is_generated_from_the_catalog():
    path = Path(__file__).resolve().parents[2] / "docs" / "events.md"
    assert path.read_text() == render(), "docs/events.md is stale: run `make docs`"


def test_docs_list_the_renamed_draft_events():
    text = render()
    for old, new in catalog.RENAMED.items():
        assert f"| `{old}` | `{new}` |" in text


# --- worst cases: no frame over WS_MAX_MESSAGE_BYTES --------------------------------------------------

LONG_TEXT = "é" * 1_000  # 6,000 bytes once JSON-escaped: longer than any text capped where it enters
LONG_LIST = [{"name": "c" * 255, "value": "v" * 100, "n": 10**12} for _ in range(3_000)]


def _worst(value, hint):
    import types
    import typing

    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value
    if origin in (types.UnionType, typing.Union):
        arms = [a for a in typing.get_args(hint) if a is not type(None)]
        return _worst(value, arms[0]) if len(arms) == 1 else value
    if hint is str:
        return LONG_TEXT
    if hint in (list, typing.Any) or origin is list:
        return list(LONG_LIST)
    if hint is dict or origin is dict:
        return {**(value or {}), "items": list(LONG_LIST), "names": ["n" * 255] * 3_000,
                "nested": {"findings": ["f" * 300] * 3_000}, "text": LONG_TEXT}
    if hint is int:
        return 10**15 if value is not None else value
    return value


@pytest.mark.parametrize("name", sorted(n for n in REGISTRY if not catalog.is_connection_event(n)))
def test_every_event_type_fits_a_frame_with_worst_case_payloads(name, settings):
    import dataclasses

    from mlops_dashboard.events import bus, publish

    cls = REGISTRY[name]
    hints = catalog._hints(cls)
    fields = {f.name: _worst(EXAMPLES[name].get(f.name), hints[f.name]) for f in dataclasses.fields(cls)}
    if cls.coalesce_by:
        fields[cls.coalesce_by] = EXAMPLES[name][cls.coalesce_by]
        fields[cls.coalesce_by] = fields[cls.coalesce_by] * 1000 + 7 if isinstance(
            fields[cls.coalesce_by], int) else f"worst-{name}"  # a job of its own: sent at once
    start = bus.latest_id()
    assert publish(build(name, **fields)) is not None
    (_, _, text), = bus.read_after(start).events
    assert len(text.encode()) <= settings.WS_MAX_MESSAGE_BYTES
    frame = json.loads(text)
    assert frame["type"] == name
    if any(isinstance(v, (list, dict)) for v in fields.values()):
        assert "_truncated\"" in text  # what was left off is said, not silently dropped
