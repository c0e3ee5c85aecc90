"""factory_boy factories: one per model of our apps, each making a row as its app leaves it.

Rows are written straight to the database, without the services: no event, no task, no activity.
A test about what a service does calls the service; these make the state a test starts from.
Import it once Django is set up (inside fixtures and tests): factory_boy looks models up by label
when the module is loaded.
"""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

import factory
from django.core.files import File
from django.core.files.storage import default_storage
from django.utils import timezone

from monitoring import notify
from tests.data import shared_csv


def _store(csv_name) -> str:
    with open(shared_csv(csv_name), "rb") as f:
        return default_storage.save("datasets/test.csv", File(f))


def _header(csv_name) -> list[str]:
    with open(shared_csv(csv_name), newline="", encoding="utf-8") as f:
        return next(csv.reader(f))


def _rows(csv_name) -> int:
    with open(shared_csv(csv_name), "rb") as f:
        return sum(1 for _ in f) - 1


# --- users ------------------------------------------------------------------------------------------


class UserFactory(factory.django.DjangoModelFactory):
    """A user who can log in with `password` (default: "<username>-pass-123"); `staff=True` makes a
    superuser, as `createsuperuser` does."""

    class Meta:
        model = "auth.User"

    class Params:
        staff = factory.Trait(is_staff=True, is_superuser=True)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.LazyAttribute(lambda o: f"{o.username}-pass-123")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return cls._get_manager(model_class).create_user(*args, **kwargs)  # hashes the password


# --- projects ---------------------------------------------------------------------------------------


class ProjectFactory(factory.django.DjangoModelFactory):
    """A project; by default the one every factory-made row goes to ("Default", slug default), made
    once per test (get or create by slug)."""

    class Meta:
        model = "mlops_dashboard.Project"
        django_get_or_create = ("slug",)

    slug = "default"
    name = factory.LazyAttribute(lambda o: "Default" if o.slug == "default" else o.slug.replace("-", " ").title())


class MembershipFactory(factory.django.DjangoModelFactory):
    """`user` is a member of `project` with `role` (default editor)."""

    class Meta:
        model = "mlops_dashboard.Membership"
        django_get_or_create = ("project", "user")

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory("tests.factories.UserFactory")
    role = "editor"


def member(user, role: str = "editor", project=None):
    """Make `user` a member of `project` (default: the default project) with `role`; returns the
    project."""
    from mlops_dashboard import permissions
    from mlops_dashboard.models import Membership

    project = project or ProjectFactory()
    Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    permissions.forget_roles(user)  # the user object's cached roles
    return project


class ProjectPreferenceFactory(factory.django.DjangoModelFactory):
    """The project a user's pages show."""

    class Meta:
        model = "mlops_dashboard.ProjectPreference"

    user = factory.SubFactory("tests.factories.UserFactory")
    project = factory.SubFactory(ProjectFactory)


class AuditEntryFactory(factory.django.DjangoModelFactory):
    """An audit entry of the default project (entries are written by `audit_record`; this is one as it
    leaves them)."""

    class Meta:
        model = "mlops_dashboard.AuditEntry"

    user = factory.SubFactory("tests.factories.UserFactory")
    username = factory.SelfAttribute("user.username")
    project = factory.SubFactory(ProjectFactory)
    action = "update"
    object_type = "datasets.dataset"
    object_id = "1"
    object_repr = "titanic"
    summary = "name: titanic → titanic-2"


# --- datasets ---------------------------------------------------------------------------------------


class DatasetFactory(factory.django.DjangoModelFactory):
    """A dataset as the datasets app leaves it once validated and profiled (status ready), over a real
    CSV (`csv`: a name in ../shared/data or an absolute path) copied into MEDIA_ROOT."""

    class Meta:
        model = "datasets.Dataset"

    class Params:
        csv = "titanic.csv"

    project = factory.SubFactory(ProjectFactory)
    name = factory.LazyAttribute(lambda o: Path(o.csv).stem)
    file = factory.LazyAttribute(lambda o: _store(o.csv))
    original_filename = factory.LazyAttribute(lambda o: Path(o.csv).name)
    file_size = factory.LazyAttribute(lambda o: shared_csv(o.csv).stat().st_size)
    status = "ready"
    encoding = "utf-8"
    delimiter = ","
    column_names = factory.LazyAttribute(lambda o: _header(o.csv))
    column_count = factory.LazyAttribute(lambda o: len(_header(o.csv)))
    row_count = factory.LazyAttribute(lambda o: _rows(o.csv))


class ProcessingJobFactory(factory.django.DjangoModelFactory):
    """A processing job over a ready dataset, queued."""

    class Meta:
        model = "datasets.ProcessingJob"

    dataset = factory.SubFactory(DatasetFactory)
    project = factory.SelfAttribute("dataset.project")
    operation = "clean"


# --- training ---------------------------------------------------------------------------------------


class TrainingJobFactory(factory.django.DjangoModelFactory):
    """A training job over a ready dataset (titanic, target `survived`), queued."""

    class Meta:
        model = "training.TrainingJob"

    dataset = factory.SubFactory(DatasetFactory, target_column="survived")
    project = factory.SelfAttribute("dataset.project")
    dataset_name = factory.SelfAttribute("dataset.name")
    name = factory.LazyAttribute(lambda o: f"{o.dataset.name}-{o.algorithm}")
    target_column = factory.LazyAttribute(lambda o: o.dataset.target_column or "survived")
    algorithm = "sgd"
    epochs = 5


class ModelVersionFactory(factory.django.DjangoModelFactory):
    """A registered model version, inactive, without an artifact: a row to list, not a model to serve
    (the `train_version` fixture trains one that predicts)."""

    class Meta:
        model = "training.ModelVersion"

    project = factory.SubFactory(ProjectFactory)
    name = "titanic-sgd"
    version = factory.Sequence(lambda n: n + 1)
    algorithm = "sgd"
    task = "classification"
    target_column = "survived"
    validation_score = 0.8
    final_accuracy = 0.8


class DeploymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "training.Deployment"

    model_version = factory.SubFactory(ModelVersionFactory, status="active")
    project = factory.SelfAttribute("model_version.project")
    action = "deploy"


# --- pipelines --------------------------------------------------------------------------------------


class PipelineFactory(factory.django.DjangoModelFactory):
    """A pipeline over a ready dataset (titanic) that validates it and trains a linear model."""

    class Meta:
        model = "pipelines.Pipeline"

    name = factory.Sequence(lambda n: f"pipeline {n}")
    dataset = factory.SubFactory(DatasetFactory, target_column="survived")
    project = factory.SelfAttribute("dataset.project")
    steps = factory.LazyFunction(lambda: [
        {"kind": "validate_dataset", "options": {}},
        {"kind": "train_model", "options": {"algorithm": "sgd", "target_column": "survived", "epochs": 3}},
    ])


class PipelineRunFactory(factory.django.DjangoModelFactory):
    """A run of a pipeline, queued, with the pipeline's steps and dataset."""

    class Meta:
        model = "pipelines.PipelineRun"

    pipeline = factory.SubFactory(PipelineFactory)
    project = factory.SelfAttribute("pipeline.project")
    dataset = factory.SelfAttribute("pipeline.dataset")
    steps = factory.SelfAttribute("pipeline.steps")


class StepRunFactory(factory.django.DjangoModelFactory):
    """The first step of a run, queued."""

    class Meta:
        model = "pipelines.StepRun"

    run = factory.SubFactory(PipelineRunFactory)
    index = 0
    kind = factory.LazyAttribute(lambda o: o.run.steps[o.index]["kind"])
    options = factory.LazyAttribute(lambda o: o.run.steps[o.index].get("options", {}))


# --- monitoring -------------------------------------------------------------------------------------


class ApiTokenFactory(factory.django.DjangoModelFactory):
    """An API token (knox: hashed, expiring after API_TOKEN_TTL_DAYS); its key, shown once, is `.key`."""

    class Meta:
        model = "mlops_dashboard.ApiToken"

    user = factory.SubFactory(UserFactory)
    name = "test"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        token, key = model_class.objects.create(*args, **kwargs)
        token.key = key
        return token


def api_token_for(user, name: str = "test") -> str:
    """A new key of `user` for `Authorization: Token <key>`."""
    return ApiTokenFactory(user=user, name=name).key


class ActivityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "mlops_dashboard.Activity"

    title = "Dataset uploaded"
    description = "titanic.csv"
    action_type = "upload"


class MetricSampleFactory(factory.django.DjangoModelFactory):
    """A raw sample of a calm host, taken now."""

    class Meta:
        model = "monitoring.MetricSample"

    host = "h1"
    role = "worker"
    timestamp = factory.LazyFunction(timezone.now)
    cpu_percent = 20.0
    memory_percent = 40.0
    disk_percent = 50.0
    active_connections = 1
    api_response_time_ms = 20.0


class AlertRuleFactory(factory.django.DjangoModelFactory):
    """A metric rule: CPU above 90 % for a minute."""

    class Meta:
        model = "monitoring.AlertRule"

    slug = factory.Sequence(lambda n: f"rule-{n}")
    name = "CPU high"
    metric = "cpu_percent"
    comparison = "gt"
    threshold = 90.0
    duration_seconds = 60


class AlertFactory(factory.django.DjangoModelFactory):
    """An open alert of its rule on host h1."""

    class Meta:
        model = "monitoring.Alert"

    rule = factory.SubFactory(AlertRuleFactory)
    rule_key = factory.SelfAttribute("rule.slug")
    subject = "h1"
    title = factory.LazyAttribute(lambda o: f"{o.rule.name} on {o.subject}")
    priority = factory.SelfAttribute("rule.priority")
    source = factory.SelfAttribute("subject")


class NotificationChannelFactory(factory.django.DjangoModelFactory):
    """A global JSON-webhook channel (to a port nothing listens on, unless the test gives `url`)."""

    class Meta:
        model = "monitoring.NotificationChannel"

    name = factory.Sequence(lambda n: f"channel-{n}")
    url = "json://127.0.0.1:9/hook"
    service = "JSON"
    url_masked = factory.LazyAttribute(lambda o: notify.mask(o.url))


class NotificationFactory(factory.django.DjangoModelFactory):
    """A firing message of the CPU rule, already gathered and sending."""

    class Meta:
        model = "monitoring.Notification"

    kind = "firing"
    status = "sending"
    priority = "high"
    title = "[HIGH] CPU above 90% on h1"
    body = "CPU above 90% on h1"


class DeliveryFactory(factory.django.DjangoModelFactory):
    """A pending delivery of a notification to a channel."""

    class Meta:
        model = "monitoring.Delivery"

    notification = factory.SubFactory(NotificationFactory)
    channel = factory.SubFactory(NotificationChannelFactory)
    channel_name = factory.SelfAttribute("channel.name")


class NotificationPreferenceFactory(factory.django.DjangoModelFactory):
    """A user who asked to be emailed when their jobs fail."""

    class Meta:
        model = "monitoring.NotificationPreference"

    user = factory.SubFactory(UserFactory)
    my_jobs_failed = True


class SilenceFactory(factory.django.DjangoModelFactory):
    """A global silence of one rule, active for the next hour."""

    class Meta:
        model = "monitoring.Silence"

    matchers = factory.LazyFunction(lambda: {"rule": "cpu-high"})
    ends_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=1))
    comment = "maintenance"


class MaintenanceWindowFactory(factory.django.DjangoModelFactory):
    """Every day at 02:00 UTC for an hour, for every alert of one rule."""

    class Meta:
        model = "monitoring.MaintenanceWindow"

    matchers = factory.LazyFunction(lambda: {"rule": "cpu-high"})
    cron = "0 2 * * *"
    duration_minutes = 60


class AnomalyDetectionFactory(factory.django.DjangoModelFactory):
    """An isolation-forest detection over a ready dataset, queued."""

    class Meta:
        model = "monitoring.AnomalyDetection"

    dataset = factory.SubFactory(DatasetFactory)
    project = factory.SelfAttribute("dataset.project")
    dataset_name = factory.SelfAttribute("dataset.name")


class TelemetryDetectionFactory(factory.django.DjangoModelFactory):
    """A range detection over a telemetry source's temperature in the last hour, fitted on the range, queued."""

    class Meta:
        model = "monitoring.AnomalyDetection"

    dataset = None
    source = factory.SubFactory("tests.factories.SourceFactory")
    source_name = factory.SelfAttribute("source.name")
    project = factory.SelfAttribute("source.project")
    metrics = factory.LazyFunction(lambda: ["temperature"])
    end = factory.LazyFunction(lambda: timezone.now().replace(microsecond=0))
    start = factory.LazyAttribute(lambda o: o.end - timedelta(hours=1))
    use_baseline = False


class AnomalyFactory(factory.django.DjangoModelFactory):
    """A CPU spike found on host h1."""

    class Meta:
        model = "monitoring.Anomaly"

    source = "metrics"
    entity = "h1"
    metric = "cpu_percent"
    value = 99.0
    score = 8.0
    severity = "high"
    baseline = 20.0


class SourceFactory(factory.django.DjangoModelFactory):
    """A telemetry source of the default project, reporting every 10 s, seen just now."""

    class Meta:
        model = "telemetry.Source"
        django_get_or_create = ("project", "name")

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"press-{n:02d}")
    expected_interval_seconds = 10
    last_seen = factory.LazyFunction(timezone.now)


class MetricFactory(factory.django.DjangoModelFactory):
    """A series: the temperature of a source, in °C."""

    class Meta:
        model = "telemetry.Metric"
        django_get_or_create = ("source", "name")

    source = factory.SubFactory(SourceFactory)
    name = "temperature"
    unit = "°C"


class PointFactory(factory.django.DjangoModelFactory):
    """One reading of a series, a minute apart from the previous one."""

    class Meta:
        model = "telemetry.Point"

    series = factory.SubFactory(MetricFactory)
    timestamp = factory.Sequence(lambda n: timezone.now().replace(microsecond=0) - timedelta(minutes=n))
    value = 70.0


class MinuteRollupFactory(factory.django.DjangoModelFactory):
    """One minute of a series: three readings of 69, 70 and 71."""

    class Meta:
        model = "telemetry.MinuteRollup"

    series = factory.SubFactory(MetricFactory)
    bucket = factory.Sequence(lambda n: timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=n))
    count = 3
    sum = 210.0
    min = 69.0
    max = 71.0


class HourRollupFactory(MinuteRollupFactory):
    """One hour of a series."""

    class Meta:
        model = "telemetry.HourRollup"

    bucket = factory.Sequence(lambda n: timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=n))


class TelemetryImportFactory(factory.django.DjangoModelFactory):
    """A CSV import of telemetry history into the default project: ended, 10 lines, 30 points."""

    class Meta:
        model = "telemetry.TelemetryImport"

    project = factory.SubFactory(ProjectFactory)
    created_by = factory.SubFactory(UserFactory)
    original_filename = "history.csv"
    format = "wide"
    source = "press-07"
    status = "succeeded"
    progress = 100.0
    rows = 10
    points = 30


class RollupPendingFactory(factory.django.DjangoModelFactory):
    """A minute of a series whose rollups are not yet refreshed."""

    class Meta:
        model = "telemetry.RollupPending"

    series = factory.SubFactory(MetricFactory)
    bucket = factory.Sequence(lambda n: timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=n))
