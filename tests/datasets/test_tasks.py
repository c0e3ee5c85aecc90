"""Datasets end to end: a real server, a real Celery worker, a real socket, real files."""

import time

import httpx
import pytest

from datasets.models import Dataset, ProcessingJob
from tests import events as event_record
from tests import procs
from tests.conftest import session_cookie


def token_for(user):
    from tests.factories import api_token_for

    return api_token_for(user)


def wait_status(model, pk, statuses, timeout=60):
    return procs.wait_for(
        lambda: (obj := model.objects.get(pk=pk)).status in statuses and obj, timeout=timeout,
        message=f"{model.__name__} {pk} to reach {statuses}",
    )


def test_upload_through_the_server_streams_progress_then_validation_and_profile(
    server, worker, client, user, open_socket, titanic_path
):
    sock = open_socket(cookie=session_cookie(client, user))
    sock.send({"type": "ping", "ts": 0})
    sock.recv()
    body = titanic_path.read_bytes() * 40  # ~2 MB of rows (the header repeats: it fails validation later)
    response = httpx.post(
        f"{server.url}/api/datasets/", headers={"Authorization": f"Token {token_for(user)}"},
        files={"file": ("titanic.csv", titanic_path.read_bytes())}, data={"name": "Titanic", "target_column": "survived"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    dataset_id = response.json()["id"]
    events = sock.recv_until(lambda e: e["type"] == "dataset_processed" and e["dataset_id"] == dataset_id, timeout=60)
    types = [e["type"] for e in events]
    progress = [e for e in events if e["type"] == "upload_progress"]
    last = event_record.expect(progress[-1:], "upload_progress", filename="titanic.csv", progress_percent=100.0)
    assert last["bytes_uploaded"] == last["total_bytes"]
    assert types.index("dataset_created") < types.index("file_validated") < types.index("quality_assessment")
    event_record.expect(events, "dataset_created", dataset_id=dataset_id, name="Titanic")
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert events[-1]["status"] == "ready"
    assert Dataset.objects.get(pk=dataset_id).status == "ready"
    assert len(body) > 1_000_000


def test_large_upload_reports_progress_several_times(server, client, user, open_socket, tmp_path):
    sock = open_socket(cookie=session_cookie(client, user))
    sock.send({"type": "ping", "ts": 0})
    sock.recv()
    rows = b"".join(b"%d,%d,name%d\n" % (i, i * 7, i) for i in range(1_500_000))
    payload = b"id,value,name\n" + rows

    def slow_body():  # a client on a slow link: 1 MB every 0.1 s
        for i in range(0, len(payload), 1 << 20):
            yield payload[i:i + (1 << 20)]
            time.sleep(0.1)

    boundary = "xBOUNDARYx"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body():
        yield head
        yield from slow_body()
        yield tail

    length = len(head) + len(payload) + len(tail)
    response = httpx.post(f"{server.url}/api/datasets/", content=body(), timeout=60, headers={
        "Authorization": f"Token {token_for(user)}", "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(length)})
    assert response.status_code == 201, response.text
    events = sock.recv_until(lambda e: e["type"] == "upload_progress" and e["progress_percent"] == 100.0, timeout=30)
    progress = [e for e in events if e["type"] == "upload_progress"]
    assert len(progress) >= 3
    percents = [e["progress_percent"] for e in progress]
    assert percents == sorted(percents) and percents[0] < 50
    assert all(e["upload_speed"] > 0 and e["total_bytes"] == length for e in progress)


def test_upload_over_the_limit_is_refused_while_streaming(transactional_db, client, user):
    server = procs.Server(DATASET_MAX_UPLOAD_MB=1).start()
    try:
        payload = b"a,b\n" + b"1,2\n" * 600_000

        def chunks():  # no Content-Length: the limit must hold while the body streams
            for i in range(0, len(payload), 65536):
                yield payload[i:i + 65536]

        response = httpx.post(f"{server.url}/api/datasets/", timeout=30,
                              headers={"Authorization": f"Token {token_for(user)}",
                                       "Content-Type": "multipart/form-data; boundary=zz"},
                              content=chunks())
        assert response.status_code == 413
        assert "1 MB" in response.json()["detail"]
    finally:
        server.stop()
    assert not Dataset.objects.exists()


def test_processing_job_runs_in_the_worker_with_progress_and_completion(worker, client, user, open_socket, upload,
                                                                         penguins_path):
    client.force_login(user)
    sock = open_socket(cookie=session_cookie(client, user))
    dataset_id = upload(penguins_path, target_column="species").json()["id"]
    wait_status(Dataset, dataset_id, {"ready"})
    job_id = client.post(f"/api/datasets/{dataset_id}/jobs/", {"operation": "split", "options": {"stratify": True}},
                         content_type="application/json").json()["id"]
    events = sock.recv_until(lambda e: e["type"] == "job_completed" and e["job_id"] == job_id, timeout=60)
    progress = [e for e in events if e["type"] == "job_progress" and e["job_id"] == job_id]
    assert progress[0]["status"] == "queued" and any(e["status"] == "running" for e in progress)
    event_record.expect(progress, "job_progress", job_id=job_id, dataset_id=dataset_id, status="running")
    values = [e["progress"] for e in progress]
    assert values == sorted(values)
    done = event_record.expect(events[-1:], "job_completed", job_id=job_id, dataset_id=dataset_id, status="succeeded")
    assert done["duration"] >= 0
    outputs = done["result"]["outputs"]
    assert [o["label"] for o in outputs] == ["train", "test"]
    assert all(Dataset.objects.get(pk=o["dataset_id"]).status == "ready" for o in outputs)


@pytest.fixture
def big_csv(tmp_path):
    path = tmp_path / "big.csv"
    with open(path, "w") as f:
        f.write("id,a,b,c,label\n")
        for i in range(400_000):
            f.write(f"{i},{i % 97},{(i * 31) % 1000 / 7:.3f},{'x' if i % 3 else ''},{'yes' if i % 2 else 'no'}\n")
    return path


def test_killed_worker_leaves_no_job_running(live_worker_proc, transactional_db, client, user, upload, big_csv):
    live_worker_proc.stop()  # the job must run on the worker this test kills (later tests restart it)
    killed = procs.Worker(beat=True, REAPER_INTERVAL=2).start()
    try:
        client.force_login(user)
        dataset_id = upload(big_csv).json()["id"]
        wait_status(Dataset, dataset_id, {"ready"}, timeout=120)
        job_id = client.post(f"/api/datasets/{dataset_id}/jobs/", {"operation": "clean",
                             "options": {"missing": "fill_mode"}}, content_type="application/json").json()["id"]
        wait_status(ProcessingJob, job_id, {"running"})
        killed.kill()
    finally:
        killed.stop()
    survivor = procs.Worker(beat=True, REAPER_INTERVAL=2).start()
    try:
        job = wait_status(ProcessingJob, job_id, {"failed", "succeeded"}, timeout=180)
        assert job.status == "failed" and "worker" in job.error.lower()
        # Nothing left half-made: no output dataset, nothing still validating.
        assert not Dataset.objects.filter(parent_id=dataset_id).exists()
        assert not Dataset.objects.exclude(status__in=("ready", "invalid")).exists()
    finally:
        survivor.stop()


def test_a_processing_job_delivered_twice_runs_once(worker, user, titanic_path):
    """As a broker may after a visibility timeout: two deliveries at once, one set of outputs."""
    from datasets import services, tasks
    from mlops_dashboard import jobs

    from django.core.files.uploadedfile import SimpleUploadedFile

    dataset = services.dataset_create_from_upload(
        user=user, uploaded_file=SimpleUploadedFile("titanic.csv", titanic_path.read_bytes()), name="titanic")
    dataset = wait_status(Dataset, dataset.pk, {"ready"})
    job = services.processing_job_create(dataset=dataset, operation="split", options={"test_ratio": 0.25}, user=user)
    tasks.processing_job_run.delay(job.pk)  # enqueued once on create, and delivered again
    job = wait_status(ProcessingJob, job.pk, jobs.TERMINAL)
    assert job.status == "succeeded" and job.attempts == 1
    procs.wait_for(lambda: f"processing job {job.pk} already claimed" in worker.output(), timeout=30,
                   message="the second delivery to run and skip")
    outputs = Dataset.objects.filter(parent=dataset)
    assert sorted(outputs.values_list("pk", flat=True)) == sorted(o["dataset_id"] for o in job.result["outputs"])
    assert outputs.count() == 2 and Dataset.objects.count() == 3


# --- rows stay consistent while a worker holds them -----------------------------------------------------


@pytest.fixture(scope="session")
def slow_csv(tmp_path_factory):
    """About 116 MB (2,000,000 rows, 10 columns): validating and profiling it take seconds each, long
    enough to edit or delete the dataset while the worker holds it."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    n = 100_000
    frame = pd.DataFrame(rng.normal(size=(n, 8)).round(3), columns=[f"f{i}" for i in range(8)])
    frame["colour"] = rng.choice(["red", "green", "blue"], size=n)
    frame["label"] = rng.integers(0, 2, size=n)
    block = frame.to_csv(index=False, header=False)
    path = tmp_path_factory.mktemp("slow") / "slow.csv"
    with open(path, "w") as f:
        f.write(",".join(frame.columns) + "\n")
        for _ in range(20):
            f.write(block)
    return path


def ingest_in_the_worker(user, path):
    from datasets import services

    return services.dataset_create_from_file(path=str(path), name="slow", user=user, target_column="label")


def wait_worker_done(worker):
    procs.wait_for(lambda: not worker.busy(), timeout=180, interval=0.5, message="the worker to finish its tasks")


def test_an_edit_made_while_the_worker_profiles_is_kept(worker, client, user, slow_csv):
    """The worker wrote its whole row back at the end of profiling (save()): a name, description or
    target set meanwhile was lost. It writes only the fields it owns."""
    client.force_login(user)
    dataset = ingest_in_the_worker(user, slow_csv)
    reached = wait_status(Dataset, dataset.pk, {"profiling", "ready", "invalid"}, timeout=120)
    assert reached.status == "profiling", (reached.status, reached.errors, worker.output()[-3000:])
    response = client.patch(f"/api/datasets/{dataset.pk}/", {"name": "renamed", "description": "edited while profiling",
                            "target_column": "colour"}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "profiling", "profiling ended before the edit: the file is too small"
    dataset = wait_status(Dataset, dataset.pk, {"ready", "invalid"}, timeout=180)
    assert dataset.status == "ready", dataset.errors
    assert (dataset.name, dataset.description, dataset.target_column) == ("renamed", "edited while profiling", "colour")
    assert dataset.profile and dataset.row_count == 2_000_000


@pytest.mark.parametrize("phase", ["validating", "profiling"])
def test_a_dataset_deleted_while_the_worker_holds_it_stays_deleted(worker, client, user, slow_csv, phase):
    """The worker's save() found no row to update and INSERTed it again, with the same id. Its
    writes are now guarded: a deleted dataset stays deleted, and the worker stops quietly."""
    client.force_login(user)
    dataset = ingest_in_the_worker(user, slow_csv)
    procs.wait_for(lambda: Dataset.objects.filter(pk=dataset.pk, status=phase, heartbeat_at__isnull=False).exists(),
                   timeout=120, message=f"the worker to be {phase} the dataset")
    assert client.delete(f"/api/datasets/{dataset.pk}/").status_code == 204
    wait_worker_done(worker)
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert f"dataset {dataset.pk}: deleted" in worker.output()


def test_deleting_a_dataset_cancels_its_running_processing_job(worker, client, user, slow_csv):
    """It answered 400 ("cancel it first"). The delete goes through; the job, deleted with its
    dataset, stops at its next step and writes nothing."""
    from datasets import services

    client.force_login(user)
    dataset = services.dataset_create_from_file(path=str(slow_csv), name="slow", user=user, target_column="label",
                                                ingest=False)
    services.dataset_ingest(dataset_id=dataset.pk)  # ready, in this process
    response = client.post(f"/api/datasets/{dataset.pk}/jobs/", {"operation": "clean", "options": {"missing": "fill_mode"}},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]
    wait_status(ProcessingJob, job_id, {"running"}, timeout=120)
    response = client.delete(f"/api/datasets/{dataset.pk}/")
    assert response.status_code == 204, response.content
    wait_worker_done(worker)
    assert not Dataset.objects.exists() and not ProcessingJob.objects.exists()
    assert f"processing job {job_id} failed" not in worker.output()
