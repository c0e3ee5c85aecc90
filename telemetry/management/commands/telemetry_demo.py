"""`manage.py telemetry_demo`: the demo plant of `make run` (telemetry/demo.py), sent through the real
ingest API (`POST /api/telemetry/`) with a token of scope `telemetry` limited to the Default project.

At start it makes (or keeps) the `demo-plant` user, an editor of Default, the four demo sources
labelled as demo data with their units, and a fresh token (the previous one revoked; the key lives
only in this process's memory). It first backfills the hours before now (from where the series end,
after a restart), in requests of at most TELEMETRY_MAX_POINTS points, then sends every series'
reading each interval. A server that is not up yet, restarts or answers 5xx is retried with backoff,
said once in the log; a revoked or expired token is replaced. It runs until SIGINT, SIGTERM or SIGHUP
(or `--duration`), and exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import close_old_connections, connection
from django.db.models import Min

from telemetry import demo

DEMO_USERNAME = "demo-plant"
TOKEN_NAME = "Demo plant (make run)"
MAX_BACKOFF = 30.0


class Stopped(BaseException):
    """A stop signal arrived: unwind from wherever the sender is (a wait, a request) and exit. Not an
    Exception, so that no `except Exception` on the way swallows it."""


class Command(BaseCommand):
    help = "Simulate a small plant (4 presses: temperature, vibration, power) through the ingest API."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The dashboard's base URL.")
        parser.add_argument("--interval", type=int, default=5, help="Seconds between two readings of a series.")
        parser.add_argument("--backfill-hours", type=float, default=3.0,
                            help="History sent at the first start (and the longest gap filled after a restart).")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--day-seconds", type=int, default=86_400, help="The length of the daily cycle.")
        parser.add_argument("--faults-per-hour", type=float, default=3.0, help="Over the whole plant.")
        parser.add_argument("--duration", type=float, default=0,
                            help="Stop after this many seconds (0: run until stopped).")

    def handle(self, *args, **options):
        if not settings.DEMO_TELEMETRY:
            self.stdout.write("Demo plant: DEMO_TELEMETRY is off; nothing to send.")
            return
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request every 5 s
        plant = demo.Plant(seed=options["seed"], interval=options["interval"],
                           day_seconds=options["day_seconds"], faults_per_hour=options["faults_per_hour"])
        sender = DemoSender(plant, url=options["url"], backfill_seconds=options["backfill_hours"] * 3600,
                            write=self._write)
        until = time.monotonic() + options["duration"] if options["duration"] > 0 else None
        previous = {}
        if threading.current_thread() is threading.main_thread():
            def stop(signum, frame):
                raise Stopped(signum)

            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                previous[sig] = signal.signal(sig, stop)
        try:
            sender.run(until=until)
        except Stopped:
            pass
        finally:
            for sig in previous:  # a second signal must not cut the clean-up short
                signal.signal(sig, signal.SIG_IGN)
            sender.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._write(f"Demo plant: stopped ({sender.sent} points sent).")

    def _write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()


class DemoSender:
    """Sends the plant's readings from a cursor (the next reading time not yet accepted) to now."""

    def __init__(self, plant: demo.Plant, *, url: str, backfill_seconds: float, write):
        self.plant = plant
        self.url = url.rstrip("/")
        self.backfill_seconds = backfill_seconds
        self.write = write
        self.series = len(plant.machines) * len(plant.metrics)
        # Whole instants per request (every series' reading of an instant travels together).
        self.batch_points = max(self.series, min(settings.TELEMETRY_MAX_POINTS, 10_000) // self.series * self.series)
        self.client = httpx.Client(timeout=httpx.Timeout(20.0, connect=5.0), headers=host_header(self.url))
        self.key: str | None = None
        self.project_id: int | None = None
        self.cursor: float | None = None
        self.sent = 0
        self.trouble: str | None = None  # the problem last logged, so each is said once
        self.backoff = 1.0
        self.announced = False

    # --- setup (the database) ---------------------------------------------------------------------

    def setup(self) -> None:
        """The demo user, its membership, the registry of the demo sources, a fresh token; and where
        the demo series end (the cursor) when they already hold readings."""
        from mlops_dashboard import permissions
        from mlops_dashboard.models import ApiToken, Membership, Role
        from mlops_dashboard.projects import default_project
        from mlops_dashboard.tokens import api_token_create
        from telemetry import services
        from telemetry.models import Metric

        close_old_connections()
        try:
            project = default_project()
            user = get_user_model().objects.filter(username=DEMO_USERNAME).first()
            if user is None:
                user = get_user_model().objects.create_user(DEMO_USERNAME, first_name="Demo plant")  # no password: no login
            membership, _ = Membership.objects.get_or_create(project=project, user=user, defaults={"role": Role.EDITOR})
            if membership.role == Role.VIEWER:
                membership.role = Role.EDITOR
                membership.save(update_fields=["role"])
            permissions.forget_roles(user)
            sources = services.sources_mark_demo(user=user, project=project,
                                                 registry=demo.registry(self.plant.interval))
            for token in ApiToken.objects.filter(user=user, name=TOKEN_NAME):
                token.delete()  # one at a time, so each revocation's signal fires
            _, self.key = api_token_create(user=user, name=TOKEN_NAME, project=project, scope="telemetry")
            self.project_id = project.pk
            if self.cursor is None:
                series = Metric.objects.filter(source__in=sources, name__in=[m.name for m in self.plant.metrics])
                ends = series.aggregate(first=Min("last_timestamp"))["first"]
                if ends is not None and series.filter(last_timestamp__isnull=True).count() == 0:
                    self.cursor = ends.timestamp() + self.plant.interval
        finally:
            connection.close()  # a long-lived sender holds no database connection while it waits

    # --- the loop ---------------------------------------------------------------------------------

    def run(self, *, until: float | None = None) -> None:
        while until is None or time.monotonic() < until:
            if self.key is None:
                try:
                    self.setup()
                except Exception as exc:  # noqa: BLE001 - the stack must not stop because of the demo
                    self.problem(f"cannot set up ({exc}); trying again later")
                    self.pause(until, at_least=MAX_BACKOFF)
                    continue
            if self.send_due():
                self.backoff = 1.0
                self.pause(until, next_tick=True)
            else:
                self.pause(until)
                self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    def send_due(self) -> bool:
        """Send every reading from the cursor to now; False when a request must be retried later."""
        now = time.time()
        end = math.floor(now / self.plant.interval) * self.plant.interval
        oldest = end - self.backfill_seconds
        if self.cursor is None or self.cursor < oldest:
            self.cursor = oldest
        times = self.plant.grid(self.cursor, end)
        per_request = self.batch_points // self.series
        for i in range(0, len(times), per_request):
            chunk = times[i:i + per_request]
            points = [{"source": machine, "metric": metric, "value": value, "timestamp": int(t * 1000)}
                      for t in chunk for machine, metric, value in self.plant.readings(t)]
            if not self.post(points):
                return False
            self.cursor = chunk[-1] + self.plant.interval
            self.sent += len(points)
        if not self.announced and times:
            self.announced = True
            self.write(f"Demo plant: {len(self.plant.machines)} machines × {len(self.plant.metrics)} metrics "
                       f"every {self.plant.interval} s into the Default project, through {self.url}/api/telemetry/ "
                       f"({self.sent} points so far). DEMO_TELEMETRY=false turns it off.")
        return True

    def post(self, points: list) -> bool:
        """True when the points were accepted, or refused for good (400: said once and dropped)."""
        try:
            response = self.client.post(f"{self.url}/api/telemetry/",
                                        json={"project": self.project_id, "points": points},
                                        headers={"Authorization": f"Token {self.key}"})
        except httpx.HTTPError as exc:
            self.problem(f"the server at {self.url} does not answer ({type(exc).__name__}); retrying with backoff")
            return False
        if response.status_code == 202:
            if self.trouble is not None:
                self.write("Demo plant: sending again.")
                self.trouble = None
            return True
        if response.status_code == 401:
            self.problem("the token was refused (revoked or expired); making a new one")
            self.key = None
            return False
        detail = _detail(response)
        if response.status_code in (400, 413):
            self.problem(f"the server refused a batch ({response.status_code}: {detail}); dropped it")
            return True
        self.problem(f"the server answered {response.status_code} ({detail}); retrying with backoff")
        return False

    def pause(self, until: float | None, *, next_tick: bool = False, at_least: float = 0.0) -> None:
        if next_tick:
            seconds = self.plant.interval - time.time() % self.plant.interval + 0.05
        else:
            seconds = max(self.backoff, at_least)
        if until is not None:
            seconds = min(seconds, max(until - time.monotonic(), 0.0))
        time.sleep(seconds)

    def problem(self, text: str) -> None:
        if text != self.trouble:
            self.write(f"Demo plant: {text}.")
            self.trouble = text

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        with contextlib.suppress(Exception):
            connection.close()


def host_header(url: str) -> dict:
    """The Host header to send: the URL's own when ALLOWED_HOSTS takes it (the usual 127.0.0.1),
    else the first host named there (a server on 0.0.0.0 that serves only its public name)."""
    from django.http.request import split_domain_port, validate_host

    netloc = httpx.URL(url).netloc.decode()
    domain, _ = split_domain_port(netloc)
    if validate_host(domain, settings.ALLOWED_HOSTS):
        return {}
    named = [h for h in settings.ALLOWED_HOSTS if h and h != "*" and not h.startswith(".")]
    return {"Host": named[0]} if named else {}


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body)[:200]
    return str(body)[:200]
