"""Work, as bench/load.py runs and measures it: the data, model and pipeline it sets up through the
REST API, then waves of trainings, uploads and pipeline runs, each wave started at once and followed
until every job of it is terminal."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from bench._stack import ROOT, log
from bench.soak.api import MODEL

DATA = Path("/work/shared/data") if Path("/work/shared/data").is_dir() else ROOT.parent / "shared" / "data"
DATASETS = {"titanic": ("titanic.csv", "survived"), "penguins": ("penguins.csv", "species")}
# Epochs that make each algorithm a job of a few seconds on these small files (1-2 s alone).
EPOCHS = {"sgd": 500, "mlp": 300, "random_forest": 40, "gradient_boosting": 50}
TRAININGS_PER_WAVE = 10
UPLOADS_PER_WAVE = 10
# Terminal statuses, and the ones that count as success, of what a wave starts.
KINDS = {
    "training": ("/api/training-jobs/{}/", {"succeeded", "failed", "cancelled"}, "succeeded"),
    "upload": ("/api/datasets/{}/", {"ready", "invalid"}, "ready"),
    "pipeline": ("/api/pipeline-runs/{}/", {"succeeded", "failed", "cancelled"}, "succeeded"),
}


def tally_text(tally: dict) -> str:
    return ", ".join(f"{kind} {t['ok']} ok" + "".join(f" {t[x]} {x}" for x in ("failed", "stuck", "refused") if t[x])
                     for kind, t in tally.items())


class WorkPart:
    """LoadBench's setup through the API, its waves of work, and the WORK section of the report."""

    def setup_work(self):
        self.files = {name: (DATA / fname).read_bytes() for name, (fname, _) in DATASETS.items()}

        # The input data: the two shared CSVs and scikit-learn's breast-cancer set (the demo's).
        import django
        from sklearn.datasets import load_breast_cancer

        os.environ.update(self.stack.env)  # the stack's settings and database, as its processes have them
        django.setup()
        from pipelines import demo

        from mlops_dashboard.models import Membership

        # The projects whose topics the user's sockets follow (the expected events: check_sockets).
        self.project_ids = set(Membership.objects.filter(user_id=self.user_id).values_list("project_id", flat=True))

        frame = load_breast_cancer(as_frame=True).frame
        frame.columns = [c.replace(" ", "_") for c in frame.columns]
        uploads = {name: (f"{name}.csv", self.files[name], target) for name, (_, target) in DATASETS.items()}
        uploads["breast_cancer"] = ("breast_cancer.csv", frame.to_csv(index=False).encode(), "target")
        self.datasets = {}
        for name, (fname, content, target) in uploads.items():
            body = self.api("POST", "/api/datasets/", "setup", files={"file": (fname, content, "text/csv")},
                            data={"name": f"load {name}", "target_column": target})
            if body is None:
                raise RuntimeError(f"upload of {fname} refused: {self.api.errors[-1:]}")
            self.datasets[name] = body["id"]
        done = self.follow([("upload", i) for i in self.datasets.values()], timeout=120, label="setup")
        bad = [f"{k} {i}: {b and b['status']}" for (k, i), b in done.items() if not b or b["status"] != "ready"]
        if bad:
            raise RuntimeError(f"setup datasets not ready: {bad}")

        # The model that serves predictions.
        job = self.api("POST", "/api/training-jobs/", "setup", json={
            "dataset": self.datasets["titanic"], "target_column": "survived", "algorithm": "random_forest",
            "epochs": 5, "name": MODEL})
        if job is None:
            raise RuntimeError(f"training refused: {self.api.errors[-1:]}")
        job = self.follow([("training", job["id"])], timeout=180, label="setup")[("training", job["id"])]
        if not job or job["status"] != "succeeded":
            raise RuntimeError(f"the model to serve did not train: {job}")
        version = self.api("POST", f"/api/models/{job['model_version']}/deploy/", "setup")["model"]
        self.instances = self._instances(version["feature_schema"])
        log(f"setup: datasets {self.datasets} ready; {version['name']} v{version['version']} "
            f"({version['algorithm']}) deployed; {len(self.instances)} rows to predict")

        pipeline = self.api("POST", "/api/pipelines/", "setup", json={
            "name": demo.NAME, "description": "The demo pipeline, run once per wave by bench/load.py.",
            "dataset": self.datasets["breast_cancer"], "steps": demo.STEPS})
        if pipeline is None:
            raise RuntimeError(f"pipeline refused: {self.api.errors[-1:]}")
        self.pipeline_id = pipeline["id"]
        self.api.errors.clear()  # setup is not measured
        self.job_errors.clear()

    def _instances(self, schema: list[dict]) -> list[dict]:
        import numpy as np
        import pandas as pd

        df = pd.read_csv(DATA / DATASETS["titanic"][0])
        names = [c["name"] for c in schema]
        return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
                for row in df[names].astype(object).to_dict(orient="records")]

    def follow(self, objs: list[tuple[str, int]], timeout: float, label: str = "poll") -> dict:
        """Poll each object until it is terminal: {obj: last body if terminal else None (stuck)}."""
        pending, last, done = list(objs), {}, {}
        deadline = time.monotonic() + timeout
        while pending:
            for obj in list(pending):
                path, terminal, _ = KINDS[obj[0]]
                body = self.api("GET", path.format(obj[1]), label)
                if body is not None:
                    last[obj] = body
                    if body["status"] in terminal:
                        done[obj] = body
                        pending.remove(obj)
            if pending:
                if time.monotonic() > deadline:
                    break
                time.sleep(self.args.poll_interval)
        for obj in pending:
            done[obj] = None
            status = last.get(obj, {}).get("status", "?")
            self.job_errors.append(f"{obj[0]} {obj[1]} stuck: still {status} after {timeout:.0f} s")
        return done

    def wave(self, k: int) -> dict:
        """Start 10 trainings, 10 uploads and 1 pipeline run at once; wait until all are terminal."""
        algorithms = list(EPOCHS)

        def train(i):
            name = list(DATASETS)[i % 2]
            algorithm = algorithms[(i // 2 + k) % len(algorithms)]
            body = self.api("POST", "/api/training-jobs/", "start training", json={
                "dataset": self.datasets[name], "target_column": DATASETS[name][1], "algorithm": algorithm,
                "epochs": EPOCHS[algorithm], "name": f"load-{name}-{algorithm}"})
            return ("training", body["id"]) if body else None

        def upload(i):
            name = list(DATASETS)[i % 2]
            body = self.api("POST", "/api/datasets/", "upload", files={"file": (f"{name}.csv", self.files[name], "text/csv")},
                            data={"name": f"load wave {k} #{i} {name}", "target_column": DATASETS[name][1]})
            return ("upload", body["id"]) if body else None

        def run_pipeline():
            body = self.api("POST", f"/api/pipelines/{self.pipeline_id}/run/", "run pipeline")
            return ("pipeline", body["id"]) if body else None

        t0 = time.monotonic()
        futures = ([("training", self.pool.submit(train, i)) for i in range(TRAININGS_PER_WAVE)]
                   + [("upload", self.pool.submit(upload, i)) for i in range(UPLOADS_PER_WAVE)]
                   + [("pipeline", self.pool.submit(run_pipeline))])
        tally = {kind: Counter() for kind in KINDS}
        started = []
        for kind, future in futures:
            obj = future.result()
            if obj is None:
                tally[kind]["refused"] += 1  # the API answered non-2xx (already an API error)
            else:
                started.append(obj)
        results = self.follow(started, timeout=self.args.wave_timeout)
        for (kind, pk), body in results.items():
            if body is None:
                tally[kind]["stuck"] += 1
            elif body["status"] == KINDS[kind][2]:
                tally[kind]["ok"] += 1
            else:
                tally[kind]["failed"] += 1
                reason = body.get("error") or body.get("errors") or body.get("message") or ""
                self.job_errors.append(f"{kind} {pk} {body['status']}: {str(reason)[:200]}")
        return {"k": k, "secs": time.monotonic() - t0, "tally": tally}

    def report_work(self, secs: float, warm: dict, api_errors: dict) -> int:
        """The WORK section, with every error since setup; returns how many there were."""
        log(f"\nWORK ({len(self.waves)} measured waves, {secs / max(1, len(self.waves)):.0f} s each on average, "
            f"longest {max((w['secs'] for w in self.waves), default=0):.0f} s)")
        total = {kind: Counter() for kind in KINDS}
        for w in self.waves:
            for kind, t in w["tally"].items():
                total[kind].update(t)
        for kind, t in total.items():
            log(f"  {kind:10} {t['ok']:>5} succeeded, {t['failed']} failed, {t['stuck']} stuck, {t['refused']} refused")
        refused = sum(w["tally"][kind]["refused"] for w in [warm, *self.waves] for kind in KINDS)
        # Errors count from the end of setup (the warm-up wave included) to the end of the run.
        pred_bad = api_errors["pred_bad"]
        errors = pred_bad + api_errors["skipped"] + api_errors["unanswered"] + api_errors["calls"] + len(self.job_errors)
        log(f"  warm-up wave ({warm['secs']:.0f} s): {tally_text(warm['tally'])}")
        log(f"  errors since setup: {errors} (non-2xx predictions {pred_bad}, other non-2xx calls {api_errors['calls']} "
            f"incl. {refused} refused starts, failed or stuck jobs {len(self.job_errors)})")
        for e in (self.api.errors + self.job_errors + api_errors["failures"])[:8]:
            log(f"    {e}")
        return errors
