"""The topic rules: which object topics exist (registered by the apps) and who may follow them."""

import pytest

from mlops_dashboard.events import topics


def test_every_object_topic_of_the_catalog_is_registered_by_its_app():
    from mlops_dashboard.events.catalog import REGISTRY

    prefixes = {
        template.split(".")[0]
        for cls in REGISTRY.values() for alternatives in cls.topics for template in alternatives.split("|")
        if "." in template
    } - {"project", "user"}
    assert prefixes == {"dataset", "processing_job", "training_job", "model", "pipeline", "pipeline_run", "telemetry"}
    assert prefixes <= set(topics.registered_prefixes())


@pytest.mark.parametrize("name", ["user", "project", "account", "Dataset", "a.b", ""])
def test_reserved_or_malformed_prefixes_are_refused(name):
    with pytest.raises(ValueError):
        topics.register_topic(name, "datasets.Dataset")


@pytest.mark.parametrize("topic, parsed", [
    ("dataset.12", ("dataset", 12)), ("pipeline_run.9", ("pipeline_run", 9)), ("dataset.0", None),
    ("dataset.012", None), ("dataset.1" + "0" * 18, None), ("project.1", None), ("nothing.1", None),
    ("dataset.-1", None), ("dataset", None),
])
def test_object_topics_are_parsed_strictly(topic, parsed):
    assert topics.object_topic(topic) == parsed


@pytest.mark.django_db
def test_may_subscribe_needs_view_permission_and_hides_what_does_not_exist(user):
    from tests.factories import DatasetFactory, ProjectFactory, UserFactory, member

    mine = DatasetFactory()
    other = DatasetFactory(project=ProjectFactory(slug="other"))
    assert topics.may_subscribe(user, f"dataset.{mine.id}") == (True, mine.project_id)
    assert topics.may_subscribe(user, f"dataset.{other.id}")[0] is False
    assert topics.may_subscribe(user, "dataset.999999")[0] is False
    outsider = UserFactory(username="outsider")
    assert topics.may_subscribe(outsider, f"dataset.{mine.id}")[0] is False
    member(outsider, "viewer", other.project)
    assert topics.may_subscribe(outsider, f"dataset.{other.id}")[0] is True  # roles re-read each time
    assert topics.projects_of(outsider) == [{"id": other.project_id, "name": "Other", "slug": "other",
                                             "role": "viewer"}]
