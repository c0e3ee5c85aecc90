"""Every factory makes a row its app can read back (the factories are the suite's fixtures' base)."""

import pytest
from django.http import HttpRequest

from tests import factories

FACTORIES = sorted(
    (name for name, value in vars(factories).items()
     if isinstance(value, type) and issubclass(value, factories.factory.django.DjangoModelFactory)
     and value is not factories.factory.django.DjangoModelFactory),
)


@pytest.mark.parametrize("name", FACTORIES)
def test_factory_makes_a_row(db, name):
    made = getattr(factories, name)()
    made.refresh_from_db()
    assert made.pk is not None and type(made).objects.filter(pk=made.pk).exists()


def test_every_model_of_our_apps_has_a_factory():
    from django.apps import apps

    ours = {f"{m._meta.app_label}.{m.__name__}" for app in ("mlops_dashboard", "datasets", "training", "pipelines", "monitoring")
            for m in apps.get_app_config(app).get_models()}
    made = {getattr(factories, name)._meta.model._meta.label for name in FACTORIES}
    assert ours <= made


def test_users_log_in_with_their_password(db, client):
    user = factories.UserFactory(username="carol")
    # With a request: the lockout backend (axes) counts attempts per address.
    assert client.login(request=HttpRequest(), username="carol", password="carol-pass-123")
    assert not user.is_staff and factories.UserFactory(staff=True).is_superuser
