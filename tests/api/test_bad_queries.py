"""What the outside fuzzer found, kept as plain regressions: each was a 500, each is now a clear 4xx."""

import pytest


@pytest.fixture
def api(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.mark.parametrize("query, field", [
    ("limit=146586759708647505920&offset=-5306", "limit"),
    ("limit=0", "limit"),
    ("limit=1001", "limit"),
    ("limit=ten", "limit"),
    ("offset=-5306", "offset"),
    ("offset=null", "offset"),
])
def test_limit_and_offset_are_validated(api, query, field):
    for url in ("/api/training-jobs/", "/api/processing-jobs/", "/api/datasets/", "/api/activity/"):
        response = api.get(f"{url}?{query}")
        assert response.status_code == 400, (url, response.content)
        assert response["Content-Type"] == "application/problem+json"
        assert field in response.json()["errors"]


def test_a_page_is_at_most_max_limit(api):
    assert api.get("/api/activity/?limit=1000").status_code == 200


@pytest.mark.parametrize("url", [
    "/api/alerts/null%2Cnull/acknowledge/",
    "/api/alerts/null%2Cnull/resolve/",
    "/api/alerts/1234567890123456789012345/resolve/",
    "/api/datasets/-1/",
    "/api/training-jobs/1e3/",
])
def test_path_ids_that_are_not_ids_are_404(api, url):
    response = api.post(url) if url.endswith("/acknowledge/") or url.endswith("/resolve/") else api.get(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("url, field", [
    ("/api/training-jobs/?dataset=null", "dataset"),
    ("/api/pipeline-runs/?pipeline=abc", "pipeline"),
    ("/api/training-jobs/?status=queued,sleeping", "status"),
    ("/api/alerts/?priority=urgent", "priority"),
    ("/api/anomalies/?severity=", "severity"),
    ("/api/datasets/?status=", "status"),
])
def test_filters_are_validated(api, url, field):
    response = api.get(url)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


def test_filters_still_filter(api):
    from tests.factories import TrainingJobFactory

    job = TrainingJobFactory(status="failed")
    TrainingJobFactory(status="queued", dataset=job.dataset)
    body = api.get(f"/api/training-jobs/?status=failed,cancelled&dataset={job.dataset_id}").json()
    assert [row["id"] for row in body["results"]] == [job.pk]


@pytest.mark.parametrize("url, field", [
    ("/api/events/?limit=&after=", "limit"),
    ("/api/monitoring/metrics/?minutes=", "minutes"),
    ("/api/activity/?limit=", "limit"),
])
def test_query_parameters_given_blank_are_refused(api, url, field):
    response = api.get(url)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
