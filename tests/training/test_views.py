"""The training pages' fragments: a jobs-table row and a registry card, the same markup as the page's."""

import pytest

from training import services

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("path", ["/training/jobs/1/row/", "/training/models/1/group/"])
def test_fragments_need_a_login(client, path):
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_job_row_fragment_is_the_row_of_the_jobs_table(client, user, titanic):
    job = services.training_job_start(user=None, dataset=titanic, target_column="survived", algorithm="sgd", epochs=3,
                                      name="survival", enqueue=False)
    client.force_login(user)
    row = client.get(f"/training/jobs/{job.pk}/row/").content.decode().strip()
    assert row.startswith(f'<tr data-job-id="{job.pk}" data-status="queued">') and 'data-action="cancel"' in row
    assert row in client.get("/training/").content.decode()
    services.training_job_run(job_id=job.pk)
    row = client.get(f"/training/jobs/{job.pk}/row/").content.decode()
    assert 'data-status="succeeded"' in row and 'data-action="cancel"' not in row and ">v1</a>" in row
    assert client.get("/training/jobs/999999/row/").status_code == 404


def test_the_model_group_fragment_is_the_card_of_the_version_name(client, user, titanic):
    versions = []
    for algorithm in ("sgd", "sgd"):
        job = services.training_job_start(user=None, dataset=titanic, target_column="survived", algorithm=algorithm, epochs=3,
                                          name="survival", enqueue=False)
        versions.append(services.training_job_run(job_id=job.pk))
    client.force_login(user)
    card = client.get(f"/training/models/{versions[0].pk}/group/").content.decode().strip()
    assert card.startswith('<section class="card model-group" data-model-name="survival"')
    assert f'data-model-id="{versions[0].pk}"' in card and f'data-model-id="{versions[1].pk}"' in card
    assert card in client.get("/training/models/").content.decode()
    assert client.get("/training/models/999999/group/").status_code == 404
