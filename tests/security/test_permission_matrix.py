"""The permission matrix (issue 14): every mutating endpoint × every kind of actor → allowed or denied.

The endpoints come from the URLconf (tests/security/urlconf.py), so an endpoint added without a row
in MATRIX below fails `test_every_endpoint_has_a_rule` and its own case, by name.

Each row says how to build the target (in project "Alpha", with factories), the request, and the
minimum rule:
- `viewer`: any member (predictions);
- `editor`: create or run in the project (uploads, jobs, pipelines, runs, detections, acknowledging);
- `owner-or-maintainer`: change, delete, cancel: an editor on what it created, else a maintainer;
- `maintainer`: deploy and roll back, manage members and the project's alert rules;
- `staff`: create projects, global objects (global alert rules, system alerts), diagnostics.

Actors: an outsider (maintainer of another project only), a viewer, an editor acting on someone
else's object, an editor acting on its own, a maintainer, staff. Expected: outsider 404 (the object
or project is invisible; 403 on global objects, which everyone sees), missing role 403 with a
`detail` naming the role, otherwise allowed: the row's success statuses. A denied request changes
nothing (the rows of every project table, and the target itself, are compared before and after).
"""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from django.apps import apps
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import resolve
from rest_framework.test import APIClient

from tests.data import shared_csv
from tests.security.urlconf import api_routes, normalize, page_routes

pytestmark = pytest.mark.django_db

ACTORS = ("outsider", "viewer", "editor_other", "editor_own", "maintainer", "staff")
RULES = ("viewer", "editor", "owner-or-maintainer", "maintainer", "staff")
ALLOW = "allowed"
# What a 403's detail must name, per rule.
ROLE_NAMED = {"editor": r"\beditor\b", "owner-or-maintainer": r"\bmaintainer\b", "maintainer": r"\bmaintainer\b",
              "staff": r"\badmin\b|\bstaff\b"}

# Mutating API endpoints that are not about a project's objects, each with why.
NOT_PROJECT_OBJECTS = {
    "POST /api/auth/token/": "login: exchanges a password for a token, anonymous by design",
    "POST /api/auth/tokens/": "the caller's own API tokens (tests/mlops_dashboard/test_tokens.py)",
    "DELETE /api/auth/tokens/{}/": "the caller's own API tokens (tests/mlops_dashboard/test_tokens.py)",
    "PUT /api/account/notifications/": "the caller's own personal route (tests/monitoring/test_personal.py)",
}
# Pages that accept a POST but are about the user themself, not a project's objects.
PAGES_NOT_PROJECT_OBJECTS = {
    "POST /login/": "login",
    "POST /logout/": "logout",
    "POST /account/password/": "the user's own password",
    "POST /account/tokens/": "the user's own API tokens",
    "POST /account/notifications/": "the user's own personal route",
    "POST /account/tokens/{}/revoke/": "the user's own API tokens",
}

TINY_CSV = b"x,y,label\n1,2,a\n3,4,b\n5,6,a\n7,8,b\n"
STEPS = [
    {"kind": "validate_dataset", "options": {}},
    {"kind": "train_model", "options": {"algorithm": "sgd", "target_column": "survived", "epochs": 1}},
]


# --- the world each case starts from -----------------------------------------------------------------


def _user(username: str, *, staff: bool = False):
    from django.contrib.auth.models import User

    # No password: hashing one per user per case would be most of the test's time.
    return User.objects.create(username=username, is_staff=staff, is_superuser=staff)


class World:
    """Project Alpha with a member of each role, project Beta (the outsider's), and staff."""

    def __init__(self):
        from tests.factories import ProjectFactory, member

        self.alpha = ProjectFactory(slug="alpha")
        self.beta = ProjectFactory(slug="beta")
        self.outsider = _user("outsider")
        member(self.outsider, "maintainer", self.beta)
        self.viewer, self.editor, self.maintainer = _user("vera"), _user("ed"), _user("mia")
        member(self.viewer, "viewer", self.alpha)
        member(self.editor, "editor", self.alpha)
        member(self.maintainer, "maintainer", self.alpha)
        self.carol = _user("carol")  # another editor: the creator of "others'" objects
        member(self.carol, "editor", self.alpha)
        self.dave = _user("dave.viewer")  # a member whose role the member endpoints change
        member(self.dave, "viewer", self.alpha)
        self.newbie = _user("newbie")  # in no project: the member endpoints add them
        self.staff = _user("root", staff=True)

    def actor(self, name: str):
        return {"outsider": self.outsider, "viewer": self.viewer, "editor_other": self.editor,
                "editor_own": self.editor, "maintainer": self.maintainer, "staff": self.staff}[name]

    def owner(self, actor: str):
        """Who created the target: the editor itself for `editor_own`, another editor otherwise."""
        return self.editor if actor == "editor_own" else self.carol

    # Objects of Alpha, made with factories (no service: no event, no task).

    def dataset(self, owner):
        from tests.factories import DatasetFactory

        return DatasetFactory(project=self.alpha, created_by=owner, target_column="survived")

    def version(self, owner, *, status: str = "inactive", name: str = "matrix-model"):
        """A version that really serves: the artifact trained once per session, stored anew."""
        from tests.factories import ModelVersionFactory

        result = trained()
        path = default_storage.save(f"models/matrix-{uuid.uuid4().hex}.joblib", ContentFile(result.artifact_bytes))
        return ModelVersionFactory(
            project=self.alpha, name=name, status=status, created_by=owner, artifact=path,
            artifact_sha256=result.artifact_sha256, artifact_size=len(result.artifact_bytes),
            feature_schema=result.feature_schema, classes=result.classes, task=result.task,
        )

    def processing_job(self, owner):
        from tests.factories import ProcessingJobFactory

        return ProcessingJobFactory(dataset=self.dataset(owner), created_by=owner)

    def training_job(self, owner):
        from tests.factories import TrainingJobFactory

        return TrainingJobFactory(dataset=self.dataset(owner), created_by=owner)

    def older_version(self, owner):
        """An inactive version older than the serving one: deploying it is a rollback."""
        older = self.version(owner)
        self.version(owner, status="active")
        return older

    def pipeline(self, owner):
        from tests.factories import PipelineFactory

        return PipelineFactory(dataset=self.dataset(owner), created_by=owner)

    def run(self, owner, *, status: str = "queued"):
        from tests.factories import PipelineRunFactory

        return PipelineRunFactory(pipeline=self.pipeline(owner), created_by=owner, status=status)

    def detection(self, owner, *, status: str = "queued"):
        from tests.factories import AnomalyDetectionFactory

        return AnomalyDetectionFactory(dataset=self.dataset(owner), created_by=owner, status=status)

    def alert(self, *, project=True):
        """An open alert: a failed job's (in Alpha) or a host's (a system alert, global)."""
        from tests.factories import AlertFactory, AlertRuleFactory

        if not project:
            return AlertFactory()
        rule = AlertRuleFactory(kind="job_failed", metric="", threshold=None, name="Job failed")
        return AlertFactory(rule=rule, project=self.alpha, subject="processing_job.1", alert_type="job_failed")

    def channel(self, *, project=True):
        from tests.factories import NotificationChannelFactory

        return NotificationChannelFactory(project=self.alpha if project else None,
                                          name=f"{'alpha' if project else 'global'} hook {uuid.uuid4().hex[:6]}")
    def silence(self, *, project=True):
        """An active silence: of Alpha (its `project` matcher) or global (one rule everywhere)."""
        from tests.factories import SilenceFactory

        if project:
            return SilenceFactory(matchers={"project": self.alpha.pk}, project=self.alpha)
        return SilenceFactory()

    def window(self, *, project=True):
        from tests.factories import MaintenanceWindowFactory

        if project:
            return MaintenanceWindowFactory(matchers={"project": self.alpha.pk}, project=self.alpha)
        return MaintenanceWindowFactory()

    def rule(self, *, project=True):
        from tests.factories import AlertRuleFactory

        if project:
            return AlertRuleFactory(project=self.alpha, kind="job_failed", metric="", threshold=None,
                                    name="Alpha jobs failing")
        return AlertRuleFactory()


@functools.lru_cache(maxsize=1)
def trained():
    """A real sgd model of titanic, trained once per session (pure trainer code, no database)."""
    from training import trainer

    return trainer.train(csv_path=str(shared_csv("titanic.csv")), target_column="survived", task=None,
                         algorithm="sgd", epochs=1)


@functools.lru_cache(maxsize=1)
def instances() -> list[dict]:
    import pandas as pd

    names = [c["name"] for c in trained().feature_schema]
    rows = pd.read_csv(shared_csv("titanic.csv")).head(2)[names].astype(object)
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in rows.to_dict("records")]


# --- the table ---------------------------------------------------------------------------------------


@dataclass
class Target:
    url: str
    body: Any = None
    obj: Any = None  # the object acted on, compared before and after a denied request


@dataclass(frozen=True)
class Case:
    """One row: `obj(world, owner)` builds the target (None: nothing to build), `url` is formatted
    with `w` (the world) and `obj`, `body` is a value or `body(world, obj, owner)`."""

    rule: str
    url: str
    obj: Callable[[World, Any], Any] | None = None
    body: Any = None
    variant: str = ""
    ok: tuple[int, ...] = (200, 201, 202, 204)
    fmt: str = "json"
    # The body field naming the parent (a dataset id), when the URL does not: an outsider may get
    # a 400 on that field ("no such dataset") instead of 404; both reveal nothing.
    parent_field: str = ""
    # The target is global (no project): everyone sees it, so an outsider gets 403, not 404.
    global_target: bool = False
    # More success statuses for staff, who may use every project (by-name predict: a 400 naming
    # the projects when staff's projects make a name ambiguous).
    staff_ok: tuple[int, ...] = ()
    notes: str = field(default="", compare=False)

    def build(self, world: World, owner) -> Target:
        obj = self.obj(world, owner) if self.obj else None
        body = self.body(world, obj, owner) if callable(self.body) else self.body
        return Target(self.url.format(w=world, obj=obj), body, obj)


def _rule_body(world, *, project: bool) -> dict:
    if project:
        return {"project": world.alpha.pk, "name": f"Alpha jobs {uuid.uuid4().hex[:6]}", "kind": "job_failed",
                "priority": "high"}
    # `project: null` says "global" outright (a missing project could default to the user's only one).
    return {"project": None, "name": f"CPU very high {uuid.uuid4().hex[:6]}", "kind": "metric",
            "metric": "cpu_percent", "comparison": "gt", "threshold": 97, "duration_seconds": 60}


def _in_hours(hours: float) -> str:
    from datetime import timedelta

    from django.utils import timezone

    return (timezone.now() + timedelta(hours=hours)).isoformat()


def _upload(w, obj, o) -> dict:
    return {"file": SimpleUploadedFile("tiny.csv", TINY_CSV, "text/csv"), "project": w.alpha.pk}


def _predict(w, obj, o) -> dict:
    return {"instances": instances()}


def _dave(w, o):
    from mlops_dashboard.models import Membership

    return Membership.objects.get(project=w.alpha, user=w.dave)


def _channel_body(world, *, project: bool) -> dict:
    return {"project": world.alpha.pk if project else None, "name": f"hook {uuid.uuid4().hex[:6]}",
            "url": "json://127.0.0.1:9/hook", "min_priority": "high"}


def _channel_form(w, obj, o, *, project: bool = True) -> dict:
    body = {"name": f"hook {uuid.uuid4().hex[:6]}", "url": "json://127.0.0.1:9/hook", "min_priority": "high",
            "default_route": "on", "project": w.alpha.pk if project else ""}
    return {f"channel-{k}": v for k, v in body.items()}


DATASET = lambda w, o: w.dataset(o)  # noqa: E731 - the table reads better with short names
PIPELINE = lambda w, o: w.pipeline(o)  # noqa: E731
PROJECT_RULE = lambda w, o: w.rule()  # noqa: E731


def _source(w, o):
    from tests.factories import MetricFactory, PointFactory, SourceFactory

    source = SourceFactory(project=w.alpha, name="press-07", created_by=o)
    PointFactory(series=MetricFactory(source=source, name="temperature"))
    return source


SOURCE = _source
SOURCE_METRIC = lambda w, o: _source(w, o).metrics.get()  # noqa: E731
GLOBAL_RULE = lambda w, o: w.rule(project=False)  # noqa: E731
PROJECT_CHANNEL = lambda w, o: w.channel()  # noqa: E731
GLOBAL_CHANNEL = lambda w, o: w.channel(project=False)  # noqa: E731
MEMBER = "/api/projects/{w.alpha.pk}/members/{obj.user.username}/"

MATRIX: dict[str, list[Case]] = {
    # datasets
    "POST /api/datasets/": [Case("editor", "/api/datasets/?project={w.alpha.pk}", body=_upload, ok=(201,),
                                 fmt="multipart")],
    "PATCH /api/datasets/{}/": [Case("owner-or-maintainer", "/api/datasets/{obj.pk}/", DATASET,
                                     {"description": "changed"}, ok=(200,))],
    "DELETE /api/datasets/{}/": [Case("owner-or-maintainer", "/api/datasets/{obj.pk}/", DATASET, ok=(204,))],
    "POST /api/datasets/{}/jobs/": [Case("editor", "/api/datasets/{obj.pk}/jobs/", DATASET, {"operation": "clean"},
                                         ok=(201,))],
    "POST /api/datasets/{}/reprofile/": [Case("owner-or-maintainer", "/api/datasets/{obj.pk}/reprofile/", DATASET,
                                              ok=(202,), notes="guessed: it rewrites the dataset's profile")],
    "POST /api/processing-jobs/{}/cancel/": [Case("owner-or-maintainer", "/api/processing-jobs/{obj.pk}/cancel/",
                                                  lambda w, o: w.processing_job(o), ok=(200,))],
    # training
    "POST /api/training-jobs/": [Case("editor", "/api/training-jobs/", body=lambda w, obj, o: {
        "dataset": w.dataset(o).pk, "target_column": "survived", "algorithm": "sgd", "epochs": 1},
        ok=(201,), parent_field="dataset")],
    "POST /api/training-jobs/{}/cancel/": [Case("owner-or-maintainer", "/api/training-jobs/{obj.pk}/cancel/",
                                                lambda w, o: w.training_job(o), ok=(200,))],
    "POST /api/models/{}/deploy/": [
        Case("maintainer", "/api/models/{obj.pk}/deploy/", lambda w, o: w.version(o), variant="deploy", ok=(200,)),
        Case("maintainer", "/api/models/{obj.pk}/deploy/", lambda w, o: w.older_version(o), variant="rollback",
             ok=(200,)),
    ],
    "DELETE /api/models/{}/": [Case("owner-or-maintainer", "/api/models/{obj.pk}/", lambda w, o: w.version(o),
                                    ok=(204,))],
    "POST /api/models/{}/predict/": [Case("viewer", "/api/models/{obj.pk}/predict/", lambda w, o: w.version(o),
                                          _predict, ok=(200,))],
    "POST /api/models/by-name/{}/predict/": [Case("viewer", "/api/models/by-name/{obj.name}/predict/",
                                                  lambda w, o: w.version(o, status="active"), _predict, ok=(200,),
                                                  staff_ok=(400,))],
    "POST /api/projects/{}/models/{}/predict/": [Case(
        "viewer", "/api/projects/{w.alpha.slug}/models/{obj.name}/predict/",
        lambda w, o: w.version(o, status="active"), _predict, ok=(200,))],
    # pipelines
    "POST /api/pipelines/": [Case("editor", "/api/pipelines/", body=lambda w, obj, o: {
        "project": w.alpha.pk, "name": "matrix pipeline", "dataset": w.dataset(o).pk, "steps": STEPS},
        ok=(201,), parent_field="dataset")],
    "PUT /api/pipelines/{}/": [Case("owner-or-maintainer", "/api/pipelines/{obj.pk}/", PIPELINE,
                                    lambda w, p, o: {"name": "renamed", "dataset": p.dataset_id, "steps": STEPS},
                                    ok=(200,))],
    "PATCH /api/pipelines/{}/": [Case("owner-or-maintainer", "/api/pipelines/{obj.pk}/", PIPELINE,
                                      {"description": "changed"}, ok=(200,))],
    "DELETE /api/pipelines/{}/": [Case("owner-or-maintainer", "/api/pipelines/{obj.pk}/", PIPELINE, ok=(204,))],
    "POST /api/pipelines/{}/run/": [Case("editor", "/api/pipelines/{obj.pk}/run/", PIPELINE, ok=(201,))],
    "POST /api/pipeline-runs/{}/cancel/": [Case("owner-or-maintainer", "/api/pipeline-runs/{obj.pk}/cancel/",
                                                lambda w, o: w.run(o), ok=(200,))],
    "POST /api/pipeline-runs/{}/retry/": [Case("editor", "/api/pipeline-runs/{obj.pk}/retry/",
                                               lambda w, o: w.run(o, status="failed"), ok=(201,),
                                               notes="guessed: a retry starts a new run, like Run")],
    # monitoring
    "POST /api/alerts/{}/acknowledge/": [
        Case("editor", "/api/alerts/{obj.pk}/acknowledge/", lambda w, o: w.alert(), variant="job alert", ok=(200,)),
        Case("staff", "/api/alerts/{obj.pk}/acknowledge/", lambda w, o: w.alert(project=False),
             variant="system alert", ok=(200,), global_target=True,
             notes="guessed: a system alert is global, and only staff change global objects"),
    ],
    "POST /api/alerts/{}/resolve/": [
        Case("editor", "/api/alerts/{obj.pk}/resolve/", lambda w, o: w.alert(), {"note": "fixed"},
             variant="job alert", ok=(200,), notes="guessed: like acknowledge"),
        Case("staff", "/api/alerts/{obj.pk}/resolve/", lambda w, o: w.alert(project=False), {"note": "fixed"},
             variant="system alert", ok=(200,), global_target=True, notes="guessed: a system alert is global"),
    ],
    "POST /api/alert-rules/": [
        Case("maintainer", "/api/alert-rules/", body=lambda w, obj, o: _rule_body(w, project=True),
             variant="project rule", ok=(201,)),
        Case("staff", "/api/alert-rules/", body=lambda w, obj, o: _rule_body(w, project=False),
             variant="global rule", ok=(201,), global_target=True),
    ],
    "PATCH /api/alert-rules/{}/": [
        Case("maintainer", "/api/alert-rules/{obj.pk}/", PROJECT_RULE, {"enabled": False}, variant="project rule",
             ok=(200,)),
        Case("staff", "/api/alert-rules/{obj.pk}/", GLOBAL_RULE, {"enabled": False}, variant="global rule",
             ok=(200,), global_target=True),
    ],
    "PUT /api/alert-rules/{}/": [
        Case("maintainer", "/api/alert-rules/{obj.pk}/", PROJECT_RULE,
             lambda w, r, o: {**_rule_body(w, project=True), "slug": r.slug, "enabled": False},
             variant="project rule", ok=(200,)),
        Case("staff", "/api/alert-rules/{obj.pk}/", GLOBAL_RULE,
             lambda w, r, o: {**_rule_body(w, project=False), "slug": r.slug, "enabled": False},
             variant="global rule", ok=(200,), global_target=True),
    ],
    "DELETE /api/alert-rules/{}/": [
        Case("maintainer", "/api/alert-rules/{obj.pk}/", PROJECT_RULE, variant="project rule", ok=(204,)),
        Case("staff", "/api/alert-rules/{obj.pk}/", GLOBAL_RULE, variant="global rule", ok=(204,),
             global_target=True),
    ],
    "POST /api/anomaly/detect/{}/cancel/": [Case("owner-or-maintainer", "/api/anomaly/detect/{obj.pk}/cancel/",
                                                 lambda w, o: w.detection(o), ok=(200,))],
    "DELETE /api/anomaly/detect/{}/": [Case("owner-or-maintainer", "/api/anomaly/detect/{obj.pk}/",
                                            lambda w, o: w.detection(o, status="succeeded"), ok=(204,))],
    "POST /api/anomaly/detect/": [Case("editor", "/api/anomaly/detect/", body=lambda w, obj, o: {
        "dataset": w.dataset(o).pk, "contamination": 0.1}, ok=(202,), parent_field="dataset")],
    # notification channels: a project's are its maintainers', the global ones staff's
    "POST /api/notification-channels/": [
        Case("maintainer", "/api/notification-channels/", body=lambda w, obj, o: _channel_body(w, project=True),
             variant="project channel", ok=(201,)),
        Case("staff", "/api/notification-channels/", body=lambda w, obj, o: _channel_body(w, project=False),
             variant="global channel", ok=(201,), global_target=True),
    ],
    "PATCH /api/notification-channels/{}/": [
        Case("maintainer", "/api/notification-channels/{obj.pk}/", PROJECT_CHANNEL, {"enabled": False},
             variant="project channel", ok=(200,)),
        Case("staff", "/api/notification-channels/{obj.pk}/", GLOBAL_CHANNEL, {"enabled": False},
             variant="global channel", ok=(200,), global_target=True),
    ],
    "DELETE /api/notification-channels/{}/": [
        Case("maintainer", "/api/notification-channels/{obj.pk}/", PROJECT_CHANNEL, variant="project channel",
             ok=(204,)),
        Case("staff", "/api/notification-channels/{obj.pk}/", GLOBAL_CHANNEL, variant="global channel", ok=(204,),
             global_target=True),
    ],
    "POST /api/notification-channels/{}/test/": [
        Case("maintainer", "/api/notification-channels/{obj.pk}/test/", PROJECT_CHANNEL, variant="project channel",
             ok=(202,), notes="a test send reveals nothing, but it spams the channel: who manages it"),
        Case("staff", "/api/notification-channels/{obj.pk}/test/", GLOBAL_CHANNEL, variant="global channel",
             ok=(202,), global_target=True),
    ],
    # silences, snoozes, maintenance windows: staff for global ones, maintainers for their project's
    "POST /api/silences/": [
        Case("maintainer", "/api/silences/", body=lambda w, obj, o: {
            "matchers": {"project": w.alpha.pk, "subject": "training_job.*"}, "ends_at": _in_hours(2)},
            variant="project silence", ok=(201,)),
        Case("staff", "/api/silences/", body=lambda w, obj, o: {"matchers": {"rule": "cpu-high"}, "ends_at": _in_hours(2)},
             variant="global silence", ok=(201,), global_target=True),
    ],
    "DELETE /api/silences/{}/": [
        Case("maintainer", "/api/silences/{obj.pk}/", lambda w, o: w.silence(), variant="project silence", ok=(204,)),
        Case("staff", "/api/silences/{obj.pk}/", lambda w, o: w.silence(project=False), variant="global silence",
             ok=(204,), global_target=True),
    ],
    "POST /api/alerts/{}/snooze/": [
        Case("maintainer", "/api/alerts/{obj.pk}/snooze/", lambda w, o: w.alert(), {"minutes": 60},
             variant="job alert", ok=(201,), notes="the same rights as silencing its rule in the project"),
        Case("staff", "/api/alerts/{obj.pk}/snooze/", lambda w, o: w.alert(project=False), {"minutes": 60},
             variant="system alert", ok=(201,), global_target=True),
    ],
    "POST /api/maintenance-windows/": [
        Case("maintainer", "/api/maintenance-windows/", body=lambda w, obj, o: {
            "matchers": {"project": w.alpha.pk}, "cron": "0 2 * * 6", "duration_minutes": 60},
            variant="project window", ok=(201,)),
        Case("staff", "/api/maintenance-windows/", body={"matchers": {"rule": "cpu-high"}, "cron": "0 2 * * 6",
                                                         "duration_minutes": 60},
             variant="global window", ok=(201,), global_target=True),
    ],
    "PATCH /api/maintenance-windows/{}/": [
        Case("maintainer", "/api/maintenance-windows/{obj.pk}/", lambda w, o: w.window(), {"enabled": False},
             variant="project window", ok=(200,)),
        Case("staff", "/api/maintenance-windows/{obj.pk}/", lambda w, o: w.window(project=False), {"enabled": False},
             variant="global window", ok=(200,), global_target=True),
    ],
    "DELETE /api/maintenance-windows/{}/": [
        Case("maintainer", "/api/maintenance-windows/{obj.pk}/", lambda w, o: w.window(), variant="project window",
             ok=(204,)),
        Case("staff", "/api/maintenance-windows/{obj.pk}/", lambda w, o: w.window(project=False),
             variant="global window", ok=(204,), global_target=True),
    ],
    # telemetry: the registry of a project's sources (maintainers, or the editor who created the source)
    "PATCH /api/telemetry/sources/{}/": [Case("owner-or-maintainer", "/api/telemetry/sources/{obj.pk}/", SOURCE,
                                              {"description": "Press line 3"}, ok=(200,))],
    "DELETE /api/telemetry/sources/{}/": [Case("owner-or-maintainer", "/api/telemetry/sources/{obj.pk}/", SOURCE,
                                               ok=(204,))],
    "PATCH /api/telemetry/sources/{}/metrics/{}/": [Case(
        "owner-or-maintainer", "/api/telemetry/sources/{obj.source_id}/metrics/{obj.name}/", SOURCE_METRIC,
        {"unit": "K", "anomaly": {"direction": "up"}}, ok=(200,), notes="a metric follows its source's rule")],
    # projects and members
    "POST /api/projects/": [Case("staff", "/api/projects/", body={"name": "Gamma"}, ok=(201,), global_target=True)],
    "POST /api/projects/{}/members/": [Case("maintainer", "/api/projects/{w.alpha.pk}/members/",
                                            body=lambda w, obj, o: {"user": w.newbie.username, "role": "viewer"},
                                            ok=(201,))],
    "PATCH /api/projects/{}/members/{}/": [Case("maintainer", MEMBER, _dave, {"role": "editor"}, ok=(200,))],
    "DELETE /api/projects/{}/members/{}/": [Case("maintainer", MEMBER, _dave, ok=(200, 204))],
    # telemetry
    "POST /api/telemetry/": [Case("editor", "/api/telemetry/", body=lambda w, obj, o: {
        "project": w.alpha.pk, "points": [{"source": "press-07", "metric": "temperature", "value": 71.3}]},
        ok=(202,))],
    "POST /api/telemetry/import/": [Case("editor", "/api/telemetry/import/?project={w.alpha.pk}", body=lambda w, obj, o: {
        "file": SimpleUploadedFile("history.csv", b"timestamp,source,metric,value\n2026-12-01T08:00:00Z,a,b,1\n",
                                   "text/csv")}, ok=(202,), fmt="multipart")],
    # diagnostics
    "POST /api/events/test/": [Case("staff", "/api/events/test/", body={"via": "server"}, ok=(201,),
                                    global_target=True)],
}


def expected(case: Case, actor: str):
    """ALLOW, 403 or 404 for this actor on this case."""
    if actor == "staff":
        return ALLOW
    if actor == "outsider":
        return 403 if case.global_target or case.rule == "staff" else 404
    allowed = {
        "viewer": ("viewer",),
        "editor_other": ("viewer", "editor"),
        "editor_own": ("viewer", "editor", "owner-or-maintainer"),
        "maintainer": ("viewer", "editor", "owner-or-maintainer", "maintainer"),
    }[actor]
    return ALLOW if case.rule in allowed else 403


# --- state: a denied request changes nothing ---------------------------------------------------------

TRACKED = ("datasets.Dataset", "datasets.ProcessingJob", "training.TrainingJob", "training.ModelVersion",
           "training.Deployment", "pipelines.Pipeline", "pipelines.PipelineRun", "monitoring.AlertRule",
           "monitoring.Alert", "monitoring.AnomalyDetection", "monitoring.NotificationChannel", "monitoring.Delivery",
           "monitoring.Silence", "monitoring.MaintenanceWindow",
           "telemetry.Source", "telemetry.Metric", "telemetry.Point",
           "mlops_dashboard.Project",
           "mlops_dashboard.Membership",
           "telemetry.Source", "telemetry.Metric", "telemetry.Point", "telemetry.TelemetryImport")


def snapshot(obj) -> dict:
    state = {label: apps.get_model(label).objects.count() for label in TRACKED}
    if obj is not None:
        state["target"] = type(obj).objects.filter(pk=obj.pk).values().first()
    return state


def detail(response) -> str:
    if "json" not in response.get("Content-Type", ""):
        return response.content[:300].decode(errors="replace")
    body = response.json()
    return str(body.get("detail", body) if isinstance(body, dict) else body)


# --- the cases ---------------------------------------------------------------------------------------


def _params():
    params = []
    for route in api_routes():
        if route.key in NOT_PROJECT_OBJECTS:
            continue
        cases = MATRIX.get(route.key)
        if not cases:
            params.append(pytest.param(route, None, None, id=f"{route.key} [NO RULE]"))
            continue
        for case in cases:
            label = route.key + (f" [{case.variant}]" if case.variant else "")
            params.extend(pytest.param(route, case, actor, id=f"{label}-{actor}") for actor in ACTORS)
    return params


def test_the_generator_finds_the_mutating_endpoints():
    keys = {r.key for r in api_routes()}
    # Router actions limited by http_method_names: DatasetViewSet answers no PUT.
    assert {"POST /api/datasets/", "PATCH /api/datasets/{}/", "DELETE /api/datasets/{}/",
            "POST /api/datasets/{}/jobs/", "POST /api/models/{}/deploy/", "POST /api/models/by-name/{}/predict/",
            "POST /api/alert-rules/"} <= keys
    assert "PUT /api/datasets/{}/" not in keys and not any(k.startswith("GET ") for k in keys)
    assert all(k.split(" ", 1)[1].startswith("/api/") for k in keys)


def test_every_endpoint_has_a_rule():
    missing = [f"new endpoint {r.key} ({r.view}) has no permission rule in the matrix"
               for r in api_routes() if r.key not in NOT_PROJECT_OBJECTS and r.key not in MATRIX]
    assert not missing, "\n".join(missing)


def test_every_rule_names_an_endpoint():
    """A row for an endpoint that is not (or no longer) in the URLconf: the issue's endpoints must
    exist, and a renamed one must take its row along."""
    keys = {r.key for r in api_routes()}
    stale = [f"matrix row {key} matches no endpoint in the URLconf" for key in MATRIX if key not in keys]
    assert not stale, "\n".join(stale)
    assert all(case.rule in RULES for cases in MATRIX.values() for case in cases)


def test_normalize_and_expectations():
    assert normalize("api/^datasets/(?P<pk>[0-9]{1,18})/jobs/$") == "/api/datasets/{}/jobs/"
    assert normalize("api/projects/<int:project_id>/members/<str:username>/") == "/api/projects/{}/members/{}/"
    assert normalize("api/models/by-name/<name>/predict/") == "/api/models/by-name/{}/predict/"
    assert [expected(Case("owner-or-maintainer", "/"), a) for a in ACTORS] == [404, 403, 403, ALLOW, ALLOW, ALLOW]
    assert [expected(Case("maintainer", "/"), a) for a in ACTORS] == [404, 403, 403, 403, ALLOW, ALLOW]
    assert [expected(Case("editor", "/"), a) for a in ACTORS] == [404, 403, ALLOW, ALLOW, ALLOW, ALLOW]
    assert [expected(Case("staff", "/"), a) for a in ACTORS] == [403] * 5 + [ALLOW]
    assert [expected(Case("viewer", "/"), a) for a in ACTORS] == [404] + [ALLOW] * 5


@pytest.mark.parametrize(("route", "case", "actor"), _params())
def test_matrix(route, case, actor):
    if case is None:
        pytest.fail(f"new endpoint {route.key} ({route.view}) has no permission rule in the matrix "
                    "(add a row to MATRIX in tests/security/test_permission_matrix.py)", pytrace=False)
    world = World()
    target = case.build(world, world.owner(actor))
    path = target.url.split("?")[0]
    assert normalize(resolve(path).route) == route.path, f"the row's URL {target.url} is not {route.key}"

    client = APIClient()
    client.force_login(world.actor(actor))
    before = snapshot(target.obj)
    response = getattr(client, route.method.lower())(target.url, target.body, format=case.fmt)
    status, want = response.status_code, expected(case, actor)
    said = f"{route.key} as {actor} (rule {case.rule}) answered {status}: {detail(response)}"

    if want == ALLOW:
        assert status in case.ok + (case.staff_ok if actor == "staff" else ()), f"should be allowed: {said}"
        return
    if want == 404:
        if case.parent_field and status == 400:
            errors = response.json().get("errors") or {}
            assert case.parent_field in errors, f"a 400 for an outsider must be about {case.parent_field}: {said}"
        else:
            assert status == 404, f"the target is invisible to an outsider, so 404: {said}"
    else:
        assert status == 403, f"should be 403: {said}"
        assert re.search(ROLE_NAMED[case.rule], detail(response), re.I), f"the 403 should name the role: {said}"
    assert snapshot(target.obj) == before, f"a denied request changed something: {said}"


# --- pages -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageCase:
    """A page row: like Case (`url`, `obj`, `body`: the form's fields); viewers and outsiders only."""

    url: str
    obj: Callable[[World, Any], Any] | None = None
    body: Any = None
    variant: str = ""
    parent_field: str = ""  # as for the API: an outsider may get the form's 400 on this field
    global_target: bool = False  # everyone sees it: an outsider gets 403
    viewer_allowed: bool = False  # about the viewer's own use of the project (the switcher)
    actors: tuple[str, ...] = ("outsider", "viewer", "allowed")

    build = Case.build


def _rule_form(w, obj, o, *, project: bool = True) -> dict:
    body = {k: ("" if v is None else v) for k, v in _rule_body(w, project=project).items()}
    return {"comparison": "gt", "duration_seconds": 0, "priority": "medium", "enabled": "on", **body}


def _global_rule_form(w, obj, o) -> dict:
    return {**_rule_form(w, obj, o, project=False), "scope": "global"}  # staff with a current project choose


# A page that creates in the user's current project names no project: an outsider's current project
# is their own, where they may create, so only a viewer (current project Alpha) is refused.
CURRENT_PROJECT = ("viewer", "allowed")


PAGES: dict[str, list[PageCase]] = {
    "POST /training/": [PageCase("/training/", body=lambda w, obj, o: {
        "dataset": w.dataset(o).pk, "target_column": "survived", "algorithm": "sgd", "epochs": 1},
        parent_field="dataset")],
    "POST /monitoring/rules/": [
        PageCase("/monitoring/rules/", body=_rule_form, variant="project rule", actors=CURRENT_PROJECT),
        PageCase("/monitoring/rules/", body=_global_rule_form, variant="global rule", global_target=True,
                 actors=CURRENT_PROJECT),
    ],
    "POST /monitoring/rules/{}/": [
        PageCase("/monitoring/rules/{obj.pk}/", PROJECT_RULE, _rule_form, variant="project rule"),
        PageCase("/monitoring/rules/{obj.pk}/", GLOBAL_RULE, _global_rule_form, variant="global rule",
                 global_target=True),
    ],
    "POST /projects/switch/": [PageCase("/projects/switch/", body=lambda w, obj, o: {"project": w.alpha.pk},
                                        viewer_allowed=True)],
    "POST /projects/{}/members/add/": [PageCase("/projects/{w.alpha.slug}/members/add/", body=lambda w, obj, o: {
        "username": w.newbie.username, "role": "viewer"})],
    "POST /projects/{}/members/{}/role/": [PageCase("/projects/{w.alpha.slug}/members/{obj.user.username}/role/",
                                                    _dave, {"role": "editor"})],
    "POST /projects/{}/members/{}/remove/": [PageCase("/projects/{w.alpha.slug}/members/{obj.user.username}/remove/",
                                                      _dave, {})],
    "POST /monitoring/rules/{}/toggle/": [
        PageCase("/monitoring/rules/{obj.pk}/toggle/", PROJECT_RULE, {}, variant="project rule"),
        PageCase("/monitoring/rules/{obj.pk}/toggle/", GLOBAL_RULE, {}, variant="global rule", global_target=True),
    ],
    "POST /monitoring/channels/": [
        PageCase("/monitoring/channels/", body=_channel_form, variant="project channel"),
        PageCase("/monitoring/channels/", body=lambda w, obj, o: _channel_form(w, obj, o, project=False),
                 variant="global channel", global_target=True),
    ],
    **{f"POST /monitoring/channels/{{}}/{verb}/": [
        PageCase(f"/monitoring/channels/{{obj.pk}}/{verb}/", PROJECT_CHANNEL, {}, variant="project channel"),
        PageCase(f"/monitoring/channels/{{obj.pk}}/{verb}/", GLOBAL_CHANNEL, {}, variant="global channel",
                 global_target=True),
    ] for verb in ("toggle", "test", "delete")},
}


def _page_params():
    params = []
    for route in page_routes():
        if route.key in PAGES_NOT_PROJECT_OBJECTS:
            continue
        cases = PAGES.get(route.key)
        if not cases:
            params.append(pytest.param(route, None, None, id=f"{route.key} [NO RULE]"))
            continue
        for case in cases:
            label = route.key + (f" [{case.variant}]" if case.variant else "")
            params.extend(pytest.param(route, case, actor, id=f"{label}-{actor}") for actor in case.actors)
    return params


def test_the_generator_finds_the_mutating_pages():
    keys = {r.key for r in page_routes()}
    assert {"POST /training/", "POST /monitoring/rules/", "POST /monitoring/rules/{}/toggle/"} <= keys
    # Pages that only show things (require_GET, or no POST in them) are not listed.
    assert not {"POST /datasets/", "POST /pipelines/", "POST /", "POST /training/models/"} & keys


def test_every_mutating_page_has_a_rule():
    missing = [f"new page {r.key} ({r.view}) accepts POST but has no permission rule in the matrix"
               for r in page_routes() if r.key not in PAGES_NOT_PROJECT_OBJECTS and r.key not in PAGES]
    assert not missing, "\n".join(missing)
    keys = {r.key for r in page_routes()}
    assert not [k for k in PAGES if k not in keys], "page rows that match no page in the URLconf"


@pytest.mark.parametrize(("route", "case", "actor"), _page_params())
def test_pages_refuse_viewers_and_outsiders(client, route, case, actor):
    """Every page that changes something answers a viewer 403 and an outsider 404 (403 for a global
    object), and changes nothing. The control, `allowed` (a maintainer; staff for a global
    object), shows that the form is valid: the refusals are about the role."""
    if case is None:
        pytest.fail(f"new page {route.key} ({route.view}) accepts POST but has no permission rule in the "
                    "matrix (add a row to PAGES in tests/security/test_permission_matrix.py)", pytrace=False)
    world = World()
    target = case.build(world, world.carol)
    assert normalize(resolve(target.url).route) == route.path, f"the row's URL {target.url} is not {route.key}"
    if actor == "allowed":
        client.force_login(world.staff if case.global_target else world.maintainer)
    else:
        client.force_login(world.actor(actor))
    before = snapshot(target.obj)
    response = client.post(target.url, target.body)
    status = response.status_code
    said = f"{route.key} as {actor} answered {status}"
    if actor == "allowed" or (actor == "viewer" and case.viewer_allowed):
        assert status < 400, said
        return
    if actor == "viewer" or case.global_target:
        assert status == 403, said
    elif case.parent_field and status == 400:
        errors = (response.context or {}).get("errors") or {}
        assert case.parent_field in errors, f"a 400 for an outsider must be about {case.parent_field}: {said}"
    else:
        assert status == 404, said
    assert snapshot(target.obj) == before, f"a refused request changed something: {said}"
