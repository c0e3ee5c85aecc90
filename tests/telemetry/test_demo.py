"""The demo plant of `make run`: the simulation (telemetry/demo.py) is deterministic, has its daily
cycle and exactly the faults it announces; `manage.py telemetry_demo` sends it through the real ingest
API into the Default project as demo sources with units, waits for a server that is not up yet, and
stops cleanly on a signal; DEMO_TELEMETRY=false leaves it out of `make run`."""

from __future__ import annotations

import io
import os
import signal
import statistics
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from mlops_dashboard.models import ApiToken, Membership
from telemetry import demo, services
from telemetry.management.commands.telemetry_demo import DEMO_USERNAME, TOKEN_NAME
from telemetry.models import Metric, Point, Source
from tests import procs

DAY = datetime(2026, 12, 2, tzinfo=UTC).timestamp()  # a midnight (UTC)
HOUR = 3600


# --- the simulation -------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_plant_and_another_seed_another():
    a, b, c = demo.Plant(seed=7), demo.Plant(seed=7), demo.Plant(seed=8)
    times = a.grid(DAY, DAY + HOUR)
    assert [a.readings(t) for t in times] == [b.readings(t) for t in times]
    assert a.faults_between(DAY, DAY + 24 * HOUR) == b.faults_between(DAY, DAY + 24 * HOUR)
    assert [a.readings(t) for t in times] != [c.readings(t) for t in times]
    assert a.faults_between(DAY, DAY + 24 * HOUR) != c.faults_between(DAY, DAY + 24 * HOUR)
    # A value is a function of its instant: a later plant (a restart, a backfill) agrees with the first.
    late = demo.Plant(seed=7)
    assert late.value("press-03", "power", times[-1]) == a.value("press-03", "power", times[-1])


def test_readings_cover_four_machines_and_three_metrics_on_an_aligned_grid():
    plant = demo.Plant(interval=5)
    times = plant.grid(DAY + 1, DAY + 61)
    assert times == [DAY + s for s in range(5, 61, 5)]
    rows = plant.readings(times[0])
    assert {(m, metric) for m, metric, _ in rows} == {
        (m, metric) for m in ("press-01", "press-02", "press-03", "press-04")
        for metric in ("temperature", "vibration", "power")}
    assert all(isinstance(v, float) and v >= 0 for _, _, v in rows)


def test_the_daily_cycle_peaks_in_the_afternoon_and_is_low_at_night():
    plant = demo.Plant(seed=3, faults_per_hour=0)
    for spec in demo.METRICS:
        def mean_around(hour):
            times = plant.grid(DAY + (hour - 0.5) * HOUR, DAY + (hour + 0.5) * HOUR)
            return statistics.fmean(plant.value("press-01", spec.name, t) for t in times)

        peak, trough = mean_around(15), mean_around(3)
        # Twice the daily half-swing between them, give or take the noise of an hour's mean.
        assert abs((peak - trough) - 2 * spec.daily) < 0.1 * spec.daily + 3 * spec.noise, spec.name
        assert mean_around(9) == pytest.approx((peak + trough) / 2, abs=0.15 * spec.daily + 3 * spec.noise)
    # A compressed day repeats within the hour.
    fast = demo.Plant(faults_per_hour=0, day_seconds=HOUR)
    assert fast.load(DAY + 0.625 * HOUR) == pytest.approx(1.0)
    assert fast.load(DAY + 0.125 * HOUR) == pytest.approx(-1.0)


def test_noise_is_there():
    plant = demo.Plant(seed=1, faults_per_hour=0)
    spec = demo.METRIC_BY_NAME["temperature"]
    times = plant.grid(DAY + 3 * HOUR, DAY + 3 * HOUR + 600)
    steps = [plant.value("press-02", "temperature", b) - plant.value("press-02", "temperature", a)
             for a, b in zip(times, times[1:])]
    assert statistics.stdev(steps) == pytest.approx(spec.noise * 2**0.5, rel=0.35)


def test_faults_come_a_few_an_hour_of_every_kind():
    plant = demo.Plant(seed=0)
    faults = plant.faults_between(DAY, DAY + 48 * HOUR)
    assert 1 * 48 <= len(faults) <= 4 * 48
    assert {f.kind for f in faults} == {"step", "spike", "drift", "stuck"}
    assert {f.machine for f in faults} == set(demo.MACHINES)
    ordered = sorted(faults, key=lambda f: f.start)
    assert ordered == faults
    assert all(a.end <= b.start for a, b in zip(faults, faults[1:]))  # never two at once
    assert demo.Plant(seed=0, faults_per_hour=0).faults_between(DAY, DAY + 48 * HOUR) == []


def test_the_values_hold_exactly_the_faults_announced():
    plant = demo.Plant(seed=5, faults_per_hour=4)
    start, end = DAY, DAY + 4 * HOUR
    faults = plant.faults_between(start, end)
    assert {f.kind for f in faults} == {"step", "spike", "drift", "stuck"}
    for t in plant.grid(start, end - 1):
        for machine, metric, value in plant.readings(t):
            spec = demo.METRIC_BY_NAME[metric]
            clean = round(max(plant.normal(machine, spec, t), 0.0), spec.decimals)
            covering = [f for f in faults if f.machine == machine and f.metric == metric and f.covers(t)]
            if not covering:
                assert value == clean, (machine, metric, t)
                continue
            fault, = covering
            normal = plant.normal(machine, spec, t)
            if fault.kind in ("step", "spike"):
                assert value == round(max(normal + fault.magnitude, 0.0), spec.decimals)
                assert abs(fault.magnitude) >= 10 * spec.noise
            elif fault.kind == "drift":
                offset = fault.magnitude * (t - fault.start) / (fault.end - fault.start)
                assert value == round(max(normal + offset, 0.0), spec.decimals)
            else:  # stuck: the reading of the fault's first instant, repeated
                assert value == plant.value(machine, metric, fault.start)
    for fault in faults:
        covered = plant.grid(fault.start, fault.end - 1)
        if fault.kind == "spike":
            assert covered == [fault.start]  # one reading
        else:
            assert len(covered) >= 240 // plant.interval
        if fault.kind == "stuck":
            assert len({plant.value(fault.machine, fault.metric, t) for t in covered}) == 1


def test_the_registry_names_units_and_the_interval():
    registry = demo.registry(5)
    assert set(registry) == set(demo.MACHINES)
    for spec in registry.values():
        assert spec["expected_interval_seconds"] == 5
        assert "Demo data" in spec["description"]
        assert {m: s["unit"] for m, s in spec["metrics"].items()} == {
            "temperature": "°C", "vibration": "mm/s", "power": "kW"}


# --- the registry service -------------------------------------------------------------------------


@pytest.mark.django_db
def test_sources_mark_demo_is_idempotent_keeps_edits_and_never_takes_over_real_sources(user, project):
    services.sources_mark_demo(user=user, project=project, registry=demo.registry(5))
    source = Source.objects.get(project=project, name="press-01")
    assert source.is_demo and source.expected_interval_seconds == 5
    source.description = "Edited by an operator."
    source.save()
    services.sources_mark_demo(user=user, project=project, registry=demo.registry(5))
    source.refresh_from_db()
    assert source.description == "Edited by an operator."
    assert Source.objects.filter(project=project).count() == 4
    assert Metric.objects.filter(source__project=project).count() == 12
    assert Metric.objects.get(source=source, name="vibration").unit == "mm/s"

    Source.objects.filter(name="press-02").update(is_demo=False)
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="press-02"):
        services.sources_mark_demo(user=user, project=project, registry=demo.registry(5))


@pytest.mark.django_db
def test_sources_mark_demo_needs_an_editor(project):
    from django.core.exceptions import PermissionDenied

    from tests.factories import UserFactory, member

    viewer = UserFactory(username="vic")
    member(viewer, "viewer", project)
    with pytest.raises(PermissionDenied):
        services.sources_mark_demo(user=viewer, project=project, registry=demo.registry(5))
    assert not Source.objects.exists()


# --- the command, against the real server ---------------------------------------------------------


def run_demo(server, **options) -> str:
    out = io.StringIO()
    call_command("telemetry_demo", url=server.url, stdout=out, **options)
    return out.getvalue()


def test_the_command_sends_demo_sources_with_units_into_the_default_project(server):
    from mlops_dashboard.projects import default_project

    output = run_demo(server, backfill_hours=0.25, duration=12)
    project = default_project()
    sources = Source.objects.filter(project=project).order_by("name")
    assert [s.name for s in sources] == ["press-01", "press-02", "press-03", "press-04"]
    assert all(s.is_demo and s.expected_interval_seconds == 5 and s.last_seen for s in sources)
    metrics = Metric.objects.filter(source__in=sources)
    assert {(m.name, m.unit) for m in metrics} == {("temperature", "°C"), ("vibration", "mm/s"), ("power", "kW")}
    assert all(m.last_value is not None for m in metrics)
    # The backfill: a quarter of an hour of readings every 5 s at once, then live ones.
    temperature = metrics.get(source__name="press-01", name="temperature")
    stored = list(Point.objects.filter(series=temperature).order_by("timestamp").values_list("timestamp", flat=True))
    assert len(stored) >= 15 * 60 // 5
    assert (stored[-1] - stored[0]).total_seconds() >= 15 * 60 - 5
    assert all((b - a).total_seconds() == 5 for a, b in zip(stored, stored[1:]))
    # What it stored is the simulation's.
    plant = demo.Plant()
    point = Point.objects.filter(series=temperature).order_by("timestamp").first()
    assert point.value == plant.value("press-01", "temperature", point.timestamp.timestamp())

    # Sent with a telemetry token limited to Default, by a demo user who is an editor there.
    token = ApiToken.objects.get(user__username=DEMO_USERNAME)
    assert (token.name, token.scope, token.project_id) == (TOKEN_NAME, "telemetry", project.pk)
    assert Membership.objects.get(user__username=DEMO_USERNAME, project=project).role == "editor"
    assert not token.user.has_usable_password()
    assert token.token_key not in output  # the key is never printed
    assert "Demo plant: 4 machines" in output and "DEMO_TELEMETRY=false" in output

    # A restart resumes where the series end (no second backfill) with a fresh token, the old one revoked.
    count = Point.objects.filter(series=temperature).count()
    output = run_demo(server, backfill_hours=0.25, duration=6)
    assert ApiToken.objects.filter(user__username=DEMO_USERNAME).count() == 1
    assert ApiToken.objects.get(user__username=DEMO_USERNAME).pk != token.pk
    sent = int(output.rsplit("(", 1)[1].split()[0])
    assert 0 < sent < 15 * 60 // 5 * 12
    assert Point.objects.filter(series=temperature).count() > count
    assert Source.objects.filter(project=project).count() == 4


def test_a_revoked_token_is_replaced_while_it_runs(server):
    import threading

    outputs = []
    runner = threading.Thread(target=lambda: outputs.append(run_demo(server, backfill_hours=0.02, duration=30)))
    runner.start()
    try:
        procs.wait_for(lambda: ApiToken.objects.filter(user__username=DEMO_USERNAME).exists()
                       and Point.objects.exists(), timeout=60, interval=0.2, message="the demo to send")
        first = ApiToken.objects.get(user__username=DEMO_USERNAME)
        first.delete()  # revoked by its owner or an admin
        procs.wait_for(lambda: ApiToken.objects.filter(user__username=DEMO_USERNAME).exists(), timeout=60,
                       interval=0.2, message="a new token")
        count = Point.objects.count()
        procs.wait_for(lambda: Point.objects.count() > count, timeout=60, interval=0.2,
                       message="points sent with the new token")
    finally:
        runner.join(timeout=120)
    assert "the token was refused" in outputs[0]
    assert ApiToken.objects.get(user__username=DEMO_USERNAME).pk != first.pk


def test_demo_telemetry_off_sends_nothing(server, settings):
    settings.DEMO_TELEMETRY = False
    output = run_demo(server, duration=2)
    assert "DEMO_TELEMETRY is off" in output
    assert not Source.objects.exists()
    assert not ApiToken.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_sender_waits_for_a_server_that_is_not_up_yet_and_stops_cleanly_on_sigterm(tmp_path):
    port = procs.free_port()
    log = open(tmp_path / "demo.log", "wb")
    sender = subprocess.Popen(
        [sys.executable, "manage.py", "telemetry_demo", "--url", f"http://127.0.0.1:{port}", "--backfill-hours", "0.1"],
        cwd=procs.ROOT, env=procs.child_env(), start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    server = None
    try:
        output = lambda: (tmp_path / "demo.log").read_text(errors="replace")  # noqa: E731
        procs.wait_for(lambda: "does not answer" in output(), timeout=120, interval=0.5,
                       message="the sender to say once that the server is not up")
        assert sender.poll() is None, output()
        server = procs.Server(port=port).start(timeout=120)
        procs.wait_for(lambda: Point.objects.filter(series__source__name="press-04").count() >= 12 * 6,
                       timeout=120, interval=0.5, message="the demo's points to land once the server is up")
        # The sender logs its recovery once the 202 is back (after the points are stored): wait for it.
        procs.wait_for(lambda: "sending again" in output() or "Demo plant: 4 machines" in output(),
                       timeout=60, interval=0.5, message="the sender to say it is sending again")
        # Said once, however many retries it took.
        assert output().count("does not answer (ConnectError)") == 1, output()
        os.killpg(sender.pid, signal.SIGTERM)
        assert sender.wait(timeout=30) == 0, output()
        assert "stopped" in output()
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
        if server is not None:
            server.stop()
        log.close()


# --- make run ---------------------------------------------------------------------------------------


def load_run_stack():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_stack", procs.ROOT / "scripts" / "run_stack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("value, on", [(None, True), ("true", True), ("1", True), ("false", False),
                                       ("False", False), ("0", False), ("off", False)])
def test_make_run_starts_the_demo_sender_unless_demo_telemetry_is_false(value, on):
    run_stack = load_run_stack()
    env = {"WEB_PORT": "8123"} if value is None else {"WEB_PORT": "8123", "DEMO_TELEMETRY": value}
    lines = run_stack.procfile(env).splitlines()
    demo_lines = [line for line in lines if "telemetry_demo" in line]
    if on:
        assert len(demo_lines) == 1 and demo_lines[0].startswith("demo: exec ")
        assert "--url http://127.0.0.1:8123" in demo_lines[0]
    else:
        assert demo_lines == []
    assert {line.split(":")[0] for line in lines} >= {"web", "worker", "beat"}


def test_the_demo_sender_targets_loopback_when_the_server_listens_on_every_address():
    run_stack = load_run_stack()
    line, = [l for l in run_stack.procfile({"HOST": "0.0.0.0", "WEB_PORT": "9000"}).splitlines() if l.startswith("demo:")]
    assert line.endswith("--url http://127.0.0.1:9000")


def test_the_sender_names_an_allowed_host(settings):
    from telemetry.management.commands.telemetry_demo import host_header

    assert host_header("http://127.0.0.1:8000") == {}
    settings.ALLOWED_HOSTS = ["dashboard.example.com"]
    assert host_header("http://127.0.0.1:8000") == {"Host": "dashboard.example.com"}
