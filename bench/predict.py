#!/usr/bin/env python
"""Prediction serving: the real API against the model's own predict, in the same run.

    .venv/bin/python bench/predict.py [--clients 8] [--seconds 20] [--batch-seconds 15]

What runs (real processes, loopback only; about a minute, never more than two):
- a temporary SQLite database (migrated) with a user and a DRF token, titanic.csv as a ready
  dataset, a random-forest model trained on it by `training.services.training_job_run` (the code a
  worker runs) and deployed;
- one uvicorn process serving `mlops_dashboard.asgi` (tests/procs.Server);
- --clients threads, each with a keep-alive HTTP connection (http.client, bodies encoded before the
  clock starts) and `Authorization: Token <key>`,
  sending single-row requests to POST /api/models/by-name/<name>/predict/ for --seconds (after a
  single client, for the latency of a request that does not queue: --rounds rounds of 2.5 s, each
  after 1.5 s of the model's own single-row calls); then two clients sending batches of 1,000 rows
  for --batch-seconds (after 3 s of warm-up), in --rounds rounds, each round after 2 s of the
  model's own 1,000-row calls. Each ratio is the median round's: this machine's speed moves by a
  third within minutes, and every stage of a request with it.
Every request is counted by the server (prediction counters, prediction_volume events) as in
production. The baseline is `training.trainer.predict` on the same loaded model and the same rows,
in this process: one row per call, then 1,000 rows per call.

Printed: requests and rows per second, p50/p99 latency, the ratios API / in-process, and each target
of issue 17 with PASS or FAIL.
Redis: REDIS_URL's host, database 14, key prefix `bench-<pid>` (deleted at the end).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._stack import private_env  # noqa: E402

TMP = Path(tempfile.mkdtemp(prefix="predict-bench-"))
PREFIX = f"bench-{os.getpid()}"
# A private database file, media directory, Redis database and key prefix (bench/_stack.py).
_env = private_env(TMP, PREFIX, redis_db=14, LOG_LEVEL="WARNING")
os.environ.clear()
os.environ.update(_env)

MODEL = "titanic-bench"
BATCH = 1_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def setup():
    """Database, user and token, a ready dataset, a trained and deployed model version."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files import File
    from django.core.files.storage import default_storage
    from django.core.management import call_command
    from mlops_dashboard.tokens import api_token_create

    from datasets.models import Dataset
    from training import services

    call_command("migrate", verbosity=0)
    from mlops_dashboard.models import Membership
    from mlops_dashboard.projects import default_project

    user = get_user_model().objects.create_user(username="bench")
    project = default_project()
    Membership.objects.create(project=project, user=user, role="maintainer")
    token = api_token_create(user=user, name="bench")[1]
    source = Path("/work/shared/data/titanic.csv")
    if not source.exists():
        source = ROOT.parent / "shared" / "data" / "titanic.csv"
    with open(source, "rb") as f:
        name = default_storage.save("datasets/titanic.csv", File(f))
    columns = source.read_text().splitlines()[0].split(",")
    dataset = Dataset.objects.create(project=project, name="titanic", file=name, status="ready", encoding="utf-8", delimiter=",",
                                     column_names=columns)
    # Started without a broker (enqueue=False): this process runs the worker's own code.
    job = services.training_job_start(user=user, dataset=dataset, target_column="survived", algorithm="random_forest",
                                      epochs=5, name=MODEL, enqueue=False)
    version = services.training_job_run(job_id=job.pk)
    services.model_version_deploy(user=user, version=version)
    return token, version, source


def instances_of(version, source: Path) -> list[dict]:
    import numpy as np
    import pandas as pd

    df = pd.read_csv(source)
    names = [c["name"] for c in version.feature_schema]
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in df[names].astype(object).to_dict(orient="records")
    ]


def in_process_singles(version, rows: list[dict], seconds: float) -> list[float]:
    """trainer.predict of one row per call, the rows in turn, for `seconds`."""
    from training import services, trainer

    model = services.model_version_load(version=version)
    took: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        trainer.predict(model, [rows[i % len(rows)]], version.feature_schema)
        took.append(time.perf_counter() - t0)
        i += 1
    return took


def in_process_batches(version, batch: list[dict], seconds: float) -> list[float]:
    """trainer.predict of the 1,000-row batch, again and again for `seconds` (at least 3 calls)."""
    from training import services, trainer

    model = services.model_version_load(version=version)
    took: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(took) < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        trainer.predict(model, batch, version.feature_schema)
        took.append(time.perf_counter() - t0)
    return took


def load(url: str, token: str, payloads, clients: int, seconds: float) -> dict:
    """`clients` threads POST payloads (cycling) for `seconds`; latencies of 200s, counts of others.

    Each thread keeps one keep-alive connection (http.client) and sends bodies encoded before the
    clock starts. The clients stand for programs on other machines: what they spend is not the
    server's, and on this 2-core machine it is taken from the server. httpx cost 0.3 ms more per
    request than http.client (0.48 against 0.19 ms against a bare asyncio server), which was a
    tenth of a single-row request's latency."""
    import http.client
    import json
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    bodies = [json.dumps(p, separators=(",", ":")).encode() for p in payloads]
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json", "Accept": "application/json"}
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[int] = [0] * clients
    stop_at = [0.0]
    # The barrier's action sets the deadline before any thread is released.
    start = threading.Barrier(clients + 1, action=lambda: stop_at.__setitem__(0, time.perf_counter() + seconds))

    def client(slot: int):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

        def post(body: bytes) -> int:
            conn.request("POST", parts.path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status

        try:
            post(bodies[slot % len(bodies)])  # connect and warm up
            start.wait()
            i = slot
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                status = post(bodies[i % len(bodies)])
                took = time.perf_counter() - t0
                if status == 200:
                    latencies[slot].append(took)
                else:
                    errors[slot] += 1
                i += clients
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = stop_at[0] - seconds
    for t in threads:
        t.join(timeout=seconds + 60)
    elapsed = time.perf_counter() - began
    flat = [x for per in latencies for x in per]
    return {"latencies": flat, "errors": sum(errors), "elapsed": elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent single-row clients")
    parser.add_argument("--seconds", type=float, default=20, help="duration of the single-row phase")
    parser.add_argument("--batch-seconds", type=float, default=15, help="duration of the batch phase (all rounds)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="the batch phase alternates in-process and API this many times (the median round counts)")
    args = parser.parse_args()
    if args.seconds + args.batch_seconds > 80:
        parser.error("keep the phases under 80 s in all (the whole run stays under two minutes)")

    began = time.monotonic()
    server = None
    try:
        log(f"setup: temp dir {TMP}, Redis {os.environ['REDIS_URL']}, key prefix {PREFIX}")
        token, version, source = setup()
        rows = instances_of(version, source)
        batch = (rows * (BATCH // len(rows) + 1))[:BATCH]
        log(f"setup: {version.label} ({version.algorithm}, validation accuracy {version.validation_score:.3f}) deployed")

        from tests.procs import Server

        server = Server().start()
        url = f"{server.url}/api/models/by-name/{MODEL}/predict/"
        log(f"server: uvicorn pid {server.proc.pid} on port {server.port}")

        log("in-process: trainer.predict on the loaded model")
        # The batches' figures come from the rounds below: these few calls only warm the model up.
        local = {"single": in_process_singles(version, rows, 5), "batch": in_process_batches(version, batch, 0)}

        # The latency of a request that does not queue, against the model's own single-row calls in
        # the same round: like the batches below, the ratio is the median round's.
        alone_rounds = []
        for n in range(args.rounds):
            log(f"round {n + 1}/{args.rounds}: in-process single-row calls, 1.5 s; API: 1 client, single rows, 2.5 s")
            model_took = in_process_singles(version, rows, 1.5)
            api = load(url, token, [{"instances": [r]} for r in rows], 1, 2.5)
            alone_rounds.append((model_took, api))
        alone = {"latencies": [x for _, api in alone_rounds for x in api["latencies"]],
                 "errors": sum(api["errors"] for _, api in alone_rounds),
                 "elapsed": sum(api["elapsed"] for _, api in alone_rounds)}
        log(f"API: {args.clients} clients, single rows, {args.seconds:.0f} s")
        single = load(url, token, [{"instances": [r]} for r in rows], args.clients, args.seconds)
        # This machine's speed moves by a third within minutes: each round measures the model and the
        # API one after the other, and the ratio is the median round's.
        # Warm-up, not measured: the first seconds of 1,000-row requests ran up to a tenth slower
        # (the server's allocator growing its arenas for them).
        log(f"API: 2 clients, batches of {BATCH:,} rows, 3 s of warm-up")
        warm = load(url, token, [{"instances": batch}], 2, 3)
        rounds = []
        for n in range(args.rounds):
            log(f"round {n + 1}/{args.rounds}: in-process 1,000-row calls, 2 s; "
                f"API: 2 clients, batches of {BATCH:,} rows, {args.batch_seconds / args.rounds:.0f} s")
            model_took = in_process_batches(version, batch, 2.0)
            api = load(url, token, [{"instances": batch}], 2, args.batch_seconds / args.rounds)
            rounds.append((model_took, api))
        local["batch"] = [x for took, _ in rounds for x in took]
        batched = {"latencies": [x for _, api in rounds for x in api["latencies"]],
                   "errors": sum(api["errors"] for _, api in rounds),
                   "elapsed": sum(api["elapsed"] for _, api in rounds)}

        from training import counters
        from training.models import ModelVersion

        # The exact total: the database's plus what Redis counted since the last flush (none runs here).
        counted = counters.overlay([ModelVersion.objects.get(pk=version.pk)])[0].prediction_count
    finally:
        if server is not None:
            server.stop()
        try:
            from mlops_dashboard.events import bus

            for key in bus.sync_client().scan_iter(match=f"{PREFIX}:*", count=1000):
                bus.sync_client().delete(key)
        except Exception as exc:  # noqa: BLE001
            log(f"cleanup: Redis keys not deleted: {exc}")
        shutil.rmtree(TMP, ignore_errors=True)

    ms = 1000.0
    l_single, l_batch = local["single"], local["batch"]
    local_rps = len(l_single) / sum(l_single)
    local_batch_rows = BATCH / statistics.median(l_batch)
    api_rps = len(single["latencies"]) / single["elapsed"]
    api_batch_rows = len(batched["latencies"]) * BATCH / batched["elapsed"]
    round_ratios = sorted(
        (len(api["latencies"]) * BATCH / api["elapsed"]) / (BATCH / statistics.median(took)) for took, api in rounds)
    batch_ratio = statistics.median(round_ratios)
    # Each round: (API p50, its limit 2 x the model's p50 + 1 ms); the median round by API p50 / limit.
    alone_by_round = sorted(((pct(api["latencies"], .5), 2 * pct(took, .5) + 0.001) for took, api in alone_rounds),
                            key=lambda r: r[0] / r[1])
    alone_p50, alone_limit = alone_by_round[len(alone_by_round) // 2]

    print()
    print(f"model {MODEL} ({version.algorithm}), {len(version.feature_schema)} features; "
          f"uvicorn, 1 process; SQLite; {os.cpu_count()} CPUs shared by server, clients and baseline")
    print()
    print(f"{'':34} {'req/s':>9} {'rows/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    alone_rps = len(alone["latencies"]) / alone["elapsed"]
    print(f"{'API, 1 row/request, 1 client':34} {alone_rps:>9.1f} {alone_rps:>10.1f} "
          f"{pct(alone['latencies'], .5) * ms:>9.2f} {pct(alone['latencies'], .99) * ms:>9.2f} {alone['errors']:>7}")
    print(f"{'API, 1 row/request, ' + str(args.clients) + ' clients':34} {api_rps:>9.1f} {api_rps:>10.1f} "
          f"{pct(single['latencies'], .5) * ms:>9.2f} {pct(single['latencies'], .99) * ms:>9.2f} {single['errors']:>7}")
    print(f"{'in-process predict, 1 row/call':34} {local_rps:>9.1f} {local_rps:>10.1f} "
          f"{pct(l_single, .5) * ms:>9.2f} {pct(l_single, .99) * ms:>9.2f} {'':>7}")
    print(f"{'API, 1,000 rows/request, 2 clients':34} {len(batched['latencies']) / batched['elapsed']:>9.2f} "
          f"{api_batch_rows:>10.0f} {pct(batched['latencies'], .5) * ms:>9.1f} {pct(batched['latencies'], .99) * ms:>9.1f} "
          f"{batched['errors']:>7}")
    print(f"{'in-process predict, 1,000 rows/call':34} {1 / statistics.median(l_batch):>9.2f} {local_batch_rows:>10.0f} "
          f"{pct(l_batch, .5) * ms:>9.1f} {pct(l_batch, .99) * ms:>9.1f} {'':>7}")
    print()
    print("single row, 1 client: API p50 against its limit (2 x in-process p50 + 1 ms) by round: "
          + ", ".join(f"{a * ms:.2f}/{lim * ms:.2f} ms" for a, lim in alone_by_round))
    print(f"single row: API p50 latency (1 client) / in-process p50 = {pct(alone['latencies'], .5) / pct(l_single, .5):.2f}x; "
          f"in-process rows/s / API rows/s ({args.clients} clients) = {local_rps / api_rps:.2f}x")
    print(f"1,000-row batch: API p50 latency / in-process p50 = {pct(batched['latencies'], .5) / pct(l_batch, .5):.2f}x; "
          f"in-process rows/s / API rows/s = {local_batch_rows / api_batch_rows:.2f}x; API / in-process rows/s by "
          f"round: {', '.join(f'{r:.2f}x' for r in round_ratios)} (median {batch_ratio:.2f}x)")
    print()
    single_p50, single_p99 = pct(single["latencies"], .5), pct(single["latencies"], .99)
    targets = [
        (f"single row, 1 client: API p50 {alone_p50 * ms:.2f} ms <= 2 x in-process p50 + 1 ms "
         f"({alone_limit * ms:.2f} ms), median round", alone_p50 <= alone_limit),
        (f"single row, {args.clients} clients: API rows/s {api_rps:.0f} >= 0.5 x in-process rows/s ({0.5 * local_rps:.0f})",
         api_rps >= 0.5 * local_rps),
        (f"single row, {args.clients} clients: API p99 {single_p99 * ms:.1f} ms <= 10 x its p50 ({10 * single_p50 * ms:.1f} ms)",
         single_p99 <= 10 * single_p50),
        (f"1,000-row batches: API rows/s >= 0.8 x in-process rows/s, median round {batch_ratio:.2f}x",
         batch_ratio >= 0.8),
    ]
    for text, ok in targets:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    answered = len(alone["latencies"]) + len(single["latencies"]) + len(batched["latencies"]) * BATCH
    warmups = 1 + args.clients + (args.rounds + 1) * 2 * BATCH + len(warm["latencies"]) * BATCH
    print(f"predictions counted by the server: {counted:,} (answered {answered:,} rows + {warmups:,} in warm-up requests)")
    print(f"run time {time.monotonic() - began:.0f} s")
    return 0 if alone["errors"] == single["errors"] == batched["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
