"""Concurrent predictions of one model are predicted together (mlops_dashboard/coalescing.py, used by
training.services.serving): through the real server, eight clients at once get what each row gets
alone, a bad request among them gets its own 400, and every row is counted."""

from __future__ import annotations

import json
import threading

import httpx

from training import counters, trainer
from training.models import ModelVersion
from training.services import serving

from .conftest import titanic_instances
from .test_predict_fast import served  # noqa: F401 - the fixture

DEADLINE = 30


def test_eight_clients_at_once_get_what_each_row_gets_alone_and_every_row_is_counted(server, served):
    version, key, _ = served
    instances, _ = titanic_instances(version, 40)
    model = serving.model_version_load(version=version)
    alone = [trainer.predict(model, [row], version.feature_schema) for row in instances]
    bad = {k: v for k, v in instances[0].items() if k != "age"}
    url = f"/api/models/{version.pk}/predict/"
    answers: dict[int, tuple[int, dict]] = {}
    barrier = threading.Barrier(8)

    def client(slot: int):
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Token {key}"}, timeout=60) as http:
            barrier.wait(DEADLINE)
            for i in range(slot, len(instances), 8):
                body = {"instances": [bad if i % 10 == 9 else instances[i]]}
                r = http.post(url, json=body)
                answers[i] = (r.status_code, r.json())

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE * 2)
    assert len(answers) == len(instances)
    for i, (status, body) in answers.items():
        if i % 10 == 9:
            assert status == 400 and "missing column 'age'" in json.dumps(body["errors"]), body
        else:
            assert status == 200, body
            assert body["predictions"] == alone[i]["predictions"]
            assert body["probabilities"] == alone[i]["probabilities"]
    counted = counters.overlay([ModelVersion.objects.get(pk=version.pk)])[0].prediction_count
    assert counted == len(instances) - len(instances) // 10
