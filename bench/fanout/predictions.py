"""Prediction traffic during bench/event_latency.py's phases (`--predict-rate`): a random forest on
titanic trained and deployed in the bench's database, and bench/load.py's open-loop sender (its
`traffic` role: one row per request, latency counted from the moment each request was due) posting
to the server under test while its sockets receive events. What the live-event figures cost when a
server also serves predictions, as `make run`'s servers do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench._stack import ROOT, Stack, log
from bench.soak import pct
from bench.soak.api import MODEL

LOAD_SCRIPT = ROOT / "bench" / "load.py"
TITANIC = Path("/work/shared/data/titanic.csv")

_DEPLOY = """
import json, sys
import django
django.setup()
from pathlib import Path
import numpy as np
import pandas as pd
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.files.storage import default_storage
from datasets.models import Dataset
from mlops_dashboard.models import Membership
from mlops_dashboard.projects import default_project
from training import services

source, model, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
user = get_user_model().objects.get(username="bench")
project = default_project()
Membership.objects.update_or_create(project=project, user=user, defaults={"role": "maintainer"})
with open(source, "rb") as f:
    name = default_storage.save("datasets/titanic.csv", File(f))
columns = source.read_text().splitlines()[0].split(",")
dataset = Dataset.objects.create(project=project, name="titanic", file=name, status="ready", encoding="utf-8",
                                 delimiter=",", column_names=columns)
# Without a broker (enqueue=False): this process runs the worker's own code.
job = services.training_job_start(user=user, dataset=dataset, target_column="survived",
                                  algorithm="random_forest", epochs=5, name=model, enqueue=False)
version = services.training_job_run(job_id=job.pk)
services.model_version_deploy(user=user, version=version)
names = [c["name"] for c in version.feature_schema]
rows = pd.read_csv(source)[names].astype(object).to_dict(orient="records")
out.write_text(json.dumps([{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
                           for r in rows]))
"""


def titanic() -> Path:
    return TITANIC if TITANIC.exists() else ROOT.parent / "shared" / "data" / "titanic.csv"


def deploy_model(stack: Stack) -> Path:
    """Train and deploy MODEL in the stack's database for the user `bench` (made by
    Stack.create_user); the rows to send, as a JSON file."""
    out = stack.tmp / "instances.json"
    subprocess.run([sys.executable, "-c", _DEPLOY, str(titanic()), MODEL, str(out)], cwd=ROOT, env=stack.env,
                   check=True, stdout=subprocess.DEVNULL)
    return out


class Traffic:
    """Predictions at `rate` per second to one server, from a process of their own."""

    def __init__(self, stack: Stack, instances: Path, token: str, rate: float):
        self.stack, self.instances, self.token, self.rate = stack, instances, token, rate
        self.helper = None
        self.n = 0

    def start(self, url: str) -> None:
        self.warm(url)
        self.helper = self.stack.helper(LOAD_SCRIPT, "traffic", self.n)
        self.helper.call({"cmd": "start", "urls": [url], "token": self.token, "rate": self.rate,
                          "path": f"/api/models/by-name/{MODEL}/predict/", "instances": str(self.instances)})

    def warm(self, url: str) -> None:
        """One prediction first, so that the model is loaded (and cached) before the clock starts."""
        import urllib.request

        row = json.loads(self.instances.read_text())[0]
        request = urllib.request.Request(f"{url}/api/models/by-name/{MODEL}/predict/", method="POST",
                                         data=json.dumps({"instances": [row]}).encode(),
                                         headers={"Authorization": f"Token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()

    def stop(self, label: str) -> dict:
        """Stop sending; the figures of what was sent (and a log line of them)."""
        import numpy as np

        out = self.stack.tmp / f"predictions-{self.n}.npz"
        self.n += 1
        result = self.helper.call({"cmd": "stop", "out": str(out)}, timeout=120)
        self.helper.stop()
        data = np.load(out)
        ok = (data["status"] >= 200) & (data["status"] < 300)
        secs = float(data["sched"].max() - data["sched"].min()) if data["sched"].size > 1 else 0.0
        row = {"label": label, "sent": int(data["status"].size), "secs": secs,
               "rate": data["status"].size / secs if secs else 0.0, "bad": int((~ok).sum()),
               "p50": pct(data["lat"][ok], 50), "p99": pct(data["lat"][ok], 99),
               "skipped": result["skipped"], "unanswered": result["unanswered"],
               "failures": result["failures"][:3]}
        log(f"  predictions meanwhile: {row['sent']:,} in {secs:.0f} s ({row['rate']:.1f}/s), p50 {row['p50']:.1f} ms, "
            f"p99 {row['p99']:.1f} ms, non-2xx {row['bad']}, not sent {row['skipped']}, unanswered "
            f"{row['unanswered']}" + (f", e.g. {row['failures']}" if row["failures"] else ""))
        return row


def describe(rows: list[dict]) -> None:
    if not rows:
        return
    log("\nPredictions sent to the server under test during its phases (one row each, open loop):")
    log("| scenario | sent | rate | p50 | p99 | non-2xx |")
    log("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        log(f"| {r['label']} | {r['sent']:,} | {r['rate']:.1f}/s | {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['bad']} |")
