#!/usr/bin/env python
"""What live progress costs a training run: the same training with and without it.

    .venv/bin/python bench/training_overhead.py [--repeat 5] [--quick]

Each workload is trained with `training.trainer.train` (deterministic: same data, same seed), in
three modes, interleaved so that background load hits them alike:

- off:      on_progress=None, should_stop=None: the bare training loop;
- service:  publishing on, as a worker does it: `training.services.ProgressRecorder` writes the
            job row and publishes `training_progress` on commit (coalesced: at most one write and
            event per EVENT_PROGRESS_INTERVAL, always the last epoch), reads `cancel_requested`
            (at most once per epoch and per 0.2 s), on a real (temporary SQLite) database and a
            real Redis, with the heartbeat thread running;
- events:   for comparison, the naive way: every update becomes a `training_progress` event handed
            to `publish()` (the bus' throttle coalesces them before Redis), no database.

Two measures of the overhead, because a busy machine makes A/B wall times noisy:

- in-loop (the headline): the time spent inside the callbacks (on_progress, should_stop), timed
  around every call, over the rest of the run: ratio = run / (run - callbacks). It is what the
  training loop waits for; precise even under background load;
- A/B: best-of --repeat wall times of the mode against `off` (and medians, and this process's CPU
  time, all threads, which includes the throttle's timer thread and the heartbeat).

Target: under 1.05 for `service`, the path that runs in production. Workloads go from the worst case for overhead (hundreds of epochs of a few
milliseconds) to a realistic one (an MLP over 50,000 rows).

Redis: REDIS_URL's host, database 14, key prefix `bench-<pid>` (deleted at the end). The database
and the generated CSV live in a temporary directory, deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._stack import private_env  # noqa: E402

TARGET = 1.05
TMP = Path(tempfile.mkdtemp(prefix="training-bench-"))
PREFIX = f"bench-{os.getpid()}"
# A private database file, media directory, Redis database and key prefix (bench/_stack.py).
_env = private_env(TMP, PREFIX, redis_db=14, LOG_LEVEL="WARNING")
os.environ.clear()
os.environ.update(_env)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_csv(path: Path, rows: int) -> Path:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    X = rng.normal(size=(rows, 10))
    y = (X[:, 0] + X[:, 1] * X[:, 2] - np.sin(X[:, 3]) + rng.normal(scale=0.7, size=rows) > 0).astype(int)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)])
    df["colour"] = rng.choice(["red", "green", "blue", "amber"], size=rows)
    df["label"] = y
    df.to_csv(path, index=False)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer, smaller runs (smoke test)")
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.files import File
    from django.core.files.storage import default_storage
    from django.core.management import call_command
    from threadpoolctl import threadpool_limits

    from datasets.models import Dataset
    from mlops_dashboard.events import bus, catalog, publish
    from mlops_dashboard.jobs import claim, heartbeat
    from training import services, trainer
    from training.models import TrainingJob

    call_command("migrate", verbosity=0)
    titanic = "/work/shared/data/titanic.csv"
    if not Path(titanic).exists():
        titanic = str(ROOT.parent / "shared" / "data" / "titanic.csv")
    big = make_csv(TMP / "big.csv", 10_000 if args.quick else 50_000)
    repeat = 2 if args.quick else args.repeat
    workloads = [
        # (label, csv, target, algorithm, epochs)
        ("titanic sgd (~3 ms epochs)", titanic, "survived", "sgd", 100 if args.quick else 300),
        ("titanic mlp (~20 ms epochs)", titanic, "survived", "mlp", 20 if args.quick else 60),
        ("titanic random_forest (~40 ms)", titanic, "survived", "random_forest", 5 if args.quick else 20),
        (f"{big.stat().st_size // 1_000_000} MB CSV mlp (~0.3 s)", str(big), "label", "mlp", 3 if args.quick else 8),
    ]

    spent = [0.0]  # seconds inside the callbacks during the current run

    def timed(fn):
        def call(*a):
            t0 = time.perf_counter()
            try:
                return fn(*a)
            finally:
                spent[0] += time.perf_counter() - t0

        return call

    def run_off(csv, target, algorithm, epochs):
        return trainer.train(csv_path=csv, target_column=target, task=None, algorithm=algorithm, epochs=epochs)

    def run_events(csv, target, algorithm, epochs):
        job_id = 10**9 + secrets.randbelow(10**6)  # a job no page follows

        def on_progress(u):
            publish(catalog.TrainingProgress(
                job_id=job_id, progress=float(u.progress), stage=u.stage, current_stage=u.stage,
                estimated_time_remaining=u.estimated_time_remaining, current_epoch=u.current_epoch or 0,
                total_epochs=epochs, current_loss=u.current_loss, live_accuracy=u.live_accuracy, message=u.message,
            ))

        result = trainer.train(csv_path=csv, target_column=target, task=None, algorithm=algorithm, epochs=epochs,
                               on_progress=timed(on_progress))
        bus.throttle().flush()
        return result

    datasets: dict[str, Dataset] = {}

    def run_service(csv, target, algorithm, epochs):
        if csv not in datasets:
            with open(csv, "rb") as f:
                name = default_storage.save("datasets/bench.csv", File(f))
            with open(csv) as f:
                columns = f.readline().strip().split(",")
            datasets[csv] = Dataset.objects.create(name=Path(csv).stem, file=name, status="ready", encoding="utf-8",
                                                   delimiter=",", column_names=columns)
        job = TrainingJob.objects.create(name="bench", dataset=datasets[csv], target_column=target,
                                         algorithm=algorithm, epochs=epochs)
        claim(TrainingJob, job.pk)
        recorder = services.ProgressRecorder(job)
        with heartbeat(TrainingJob, job.pk):
            result = trainer.train(csv_path=csv, target_column=target, task=None, algorithm=algorithm, epochs=epochs,
                                   on_progress=timed(recorder), should_stop=timed(recorder.should_stop))
        bus.throttle().flush()
        return result

    modes = {"off": run_off, "events": run_events, "service": run_service}
    rows = []
    try:
        bus.sync_client().ping()
        with threadpool_limits(limits=1):  # as in a worker (TRAINING_THREADS=1)
            for label, csv, target, algorithm, epochs in workloads:
                log(f"{label}: warm-up")
                run_off(csv, target, algorithm, epochs)
                times = {m: [] for m in modes}
                cpu = {m: [] for m in modes}
                inloop = {m: [] for m in modes}
                for i in range(repeat):
                    for mode, fn in modes.items():
                        spent[0] = 0.0
                        t0, c0 = time.perf_counter(), time.process_time()
                        fn(csv, target, algorithm, epochs)
                        took = time.perf_counter() - t0
                        times[mode].append(took)
                        cpu[mode].append(time.process_time() - c0)
                        inloop[mode].append(took / (took - spent[0]))
                    log(f"{label}: run {i + 1}/{repeat} " + " ".join(f"{m}={times[m][-1]:.3f}s" for m in modes))
                rows.append((label, epochs, {m: min(v) for m, v in times.items()},
                             {m: statistics.median(v) for m, v in times.items()}, {m: min(v) for m, v in cpu.items()},
                             {m: statistics.median(v) for m, v in inloop.items()}))
    finally:
        for key in bus.sync_client().scan_iter(match=f"{PREFIX}:*", count=1000):
            bus.sync_client().delete(key)
        shutil.rmtree(TMP, ignore_errors=True)

    print()
    print(f"{'':34} {'':6} {'in-loop ratio':>15}   {'A/B: best of ' + str(repeat) + ' (s) and ratios':>37}"
          f"   {'median ratio':>13}   {'CPU ratio':>12}")
    print(f"{'workload':34} {'epochs':>6} {'events':>7} {'service':>7}   {'off':>7} {'events':>7} {'ratio':>6}"
          f" {'service':>8} {'ratio':>6}   {'events':>6} {'service':>6}   {'events':>5} {'service':>6}")
    worst = 0.0
    for label, epochs, best, median, cpu, inloop in rows:
        worst = max(worst, inloop["service"])
        print(f"{label:34} {epochs:>6} {inloop['events']:>7.4f} {inloop['service']:>7.4f}"
              f"   {best['off']:>7.3f} {best['events']:>7.3f} {best['events'] / best['off']:>6.3f}"
              f" {best['service']:>8.3f} {best['service'] / best['off']:>6.3f}"
              f"   {median['events'] / median['off']:>6.3f} {median['service'] / median['off']:>7.3f}"
              f"   {cpu['events'] / cpu['off']:>5.3f} {cpu['service'] / cpu['off']:>6.3f}")
    print()
    print(f"publishing on/off as a worker does it (service, in-loop), worst workload: {worst:.4f} (target < {TARGET}) -> "
          f"{'OK' if worst < TARGET else 'ABOVE TARGET'}")
    return 0 if worst < TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
