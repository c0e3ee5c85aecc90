"""The one module that decides who may do what (mlops_dashboard.permissions), over real rows."""

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404

from mlops_dashboard import permissions
from mlops_dashboard.models import Membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def alpha():
    from tests.factories import ProjectFactory

    return ProjectFactory(slug="alpha")


@pytest.fixture
def people(alpha):
    from tests.factories import UserFactory, member

    made = {role: UserFactory(username=role) for role in ("viewer", "editor", "maintainer", "outsider")}
    for role in ("viewer", "editor", "maintainer"):
        member(made[role], role, alpha)
    member(made["outsider"], "maintainer")  # of the default project only
    made["staff"] = UserFactory(username="admin", staff=True)
    return made


@pytest.fixture
def dataset(alpha, people):
    from tests.factories import DatasetFactory

    return DatasetFactory(project=alpha, created_by=people["editor"])


def test_members_see_and_outsiders_get_404(people, dataset):
    for role in ("viewer", "editor", "maintainer", "staff"):
        permissions.authorize(people[role], "view", dataset)
    with pytest.raises(Http404):
        permissions.authorize(people["outsider"], "view", dataset)
    with pytest.raises(Http404):  # not 403: the object's existence does not leak
        permissions.authorize(people["outsider"], "delete", dataset)


def test_a_viewer_is_refused_with_the_role_named(people, dataset, alpha):
    with pytest.raises(PermissionDenied, match="editor role in project “Alpha”"):
        permissions.authorize(people["viewer"], "create", alpha)
    with pytest.raises(PermissionDenied, match="maintainer"):
        permissions.authorize(people["viewer"], "delete", dataset)


def test_editors_change_what_they_made_and_maintainers_anything(people, dataset, alpha):
    from tests.factories import DatasetFactory, UserFactory, member

    permissions.authorize(people["editor"], "delete", dataset)
    other_editor = UserFactory(username="editor2")
    member(other_editor, "editor", alpha)
    with pytest.raises(PermissionDenied, match="maintainer role.*only what they created"):
        permissions.authorize(other_editor, "delete", dataset)
    permissions.authorize(people["maintainer"], "delete", DatasetFactory(project=alpha))
    with pytest.raises(PermissionDenied, match="maintainer"):
        permissions.authorize(people["editor"], "deploy", dataset)
    permissions.authorize(people["staff"], "deploy", dataset)


def test_global_objects_are_read_by_all_and_changed_by_staff(people):
    from tests.factories import AlertRuleFactory

    rule = AlertRuleFactory()
    assert rule.project_id is None
    permissions.authorize(people["outsider"], "view", rule)
    with pytest.raises(PermissionDenied, match="admin"):
        permissions.authorize(people["maintainer"], "change", rule)
    permissions.authorize(people["staff"], "change", rule)


def test_visible_rows_and_the_system_actor(people, dataset):
    from datasets.models import Dataset
    from tests.factories import DatasetFactory

    elsewhere = DatasetFactory()  # the default project
    assert set(permissions.visible(Dataset.objects.all(), people["viewer"])) == {dataset}
    assert set(permissions.visible(Dataset.objects.all(), people["outsider"])) == {elsewhere}
    assert set(permissions.visible(Dataset.objects.all(), people["staff"])) == {dataset, elsewhere}
    permissions.authorize(None, "delete", dataset)  # a worker or beat


def test_a_token_limited_to_one_project_narrows_everything(people, dataset, alpha):
    from tests.factories import DatasetFactory, member

    maintainer = people["maintainer"]
    member(maintainer, "maintainer")  # also of the default project
    elsewhere = DatasetFactory()
    permissions.forget_roles(maintainer)
    maintainer.token_project_id = alpha.pk
    assert permissions.visible_project_ids(maintainer) == {alpha.pk}
    with pytest.raises(Http404):
        permissions.authorize(maintainer, "view", elsewhere)
    staff = people["staff"]
    staff.token_project_id = alpha.pk
    with pytest.raises(Http404):
        permissions.authorize(staff, "view", elsewhere)
    permissions.authorize(staff, "delete", dataset)


def test_roles_are_read_once_per_user_object(people, alpha, django_assert_num_queries):
    viewer = people["viewer"]
    permissions.forget_roles(viewer)
    with django_assert_num_queries(1):
        for _ in range(5):
            permissions.role_in(viewer, alpha)
    Membership.objects.filter(user=viewer).update(role="maintainer")
    assert permissions.role_in(viewer, alpha) == "viewer"
    permissions.forget_roles(viewer)
    assert permissions.role_in(viewer, alpha) == "maintainer"


def test_the_project_of_a_create(people, alpha):
    from django.core.exceptions import ValidationError

    from mlops_dashboard.projects import parent_project, project_for_create
    from tests.factories import DatasetFactory, ProjectFactory, member

    assert project_for_create(people["editor"], None) == alpha  # the only one
    assert project_for_create(people["editor"], str(alpha.pk)) == alpha
    with pytest.raises(PermissionDenied, match="editor"):
        project_for_create(people["viewer"], alpha.pk)
    with pytest.raises(Http404):
        project_for_create(people["outsider"], alpha.pk)
    with pytest.raises(Http404):
        project_for_create(people["editor"], 10**12)
    with pytest.raises(ValidationError, match="Say which project"):  # staff may create everywhere
        project_for_create(people["staff"], None)
    member(people["editor"], "editor", ProjectFactory(slug="beta"))
    with pytest.raises(ValidationError, match=f"{alpha.pk} \\(Alpha\\)"):
        project_for_create(people["editor"], None)
    dataset = DatasetFactory(project=alpha)
    assert parent_project(dataset, None) == alpha
    assert parent_project(dataset, alpha.pk) == alpha
    with pytest.raises(ValidationError, match="set by its parent"):
        parent_project(dataset, alpha.pk + 1)
