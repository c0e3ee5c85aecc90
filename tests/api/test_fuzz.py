"""An outside fuzzer over every API operation: schemathesis, driven by the OpenAPI schema the live
server publishes at /api/schema/, sending what that schema allows (and what it doesn't) to a real
uvicorn as a logged-in user. No operation may answer 5xx, and every response must match the
schema: a documented status, with the documented body."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings as hypothesis_settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.factories import UserFactory

pytestmark = pytest.mark.stack

CSRF = secrets.token_hex(16)  # a valid CSRF secret format: 32 alphanumerics


@pytest.fixture
def fuzz_client(server, client):
    """A logged-in session (a staff user: every operation is reachable) plus a CSRF pair, as a browser has."""
    staff = UserFactory(username="fuzzer", staff=True)
    client.force_login(staff)
    session = client.cookies["sessionid"].value
    return {"base_url": server.url, "cookies": {"sessionid": session, "csrftoken": CSRF}, "headers": {"X-CSRFToken": CSRF}}


def _published_schema() -> dict:
    """The schema /api/schema/ serves (the same generator, run here at collection time so that each
    operation is a test of its own; test_schema_is_the_served_one checks they are the same)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document, renderer_context={}))


PUBLISHED = _published_schema()
schema = schemathesis.openapi.from_dict(PUBLISHED)


def test_schema_is_the_served_one(fuzz_client):
    response = httpx.get(fuzz_client["base_url"] + "/api/schema/?format=json", cookies=fuzz_client["cookies"], timeout=60)
    assert response.status_code == 200
    assert response.json() == PUBLISHED


@schema.parametrize()
@hypothesis_settings(max_examples=25, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
                     suppress_health_check=list(HealthCheck))
def test_api_operation(case, fuzz_client):
    # No 5xx, and every response as the schema documents it (status, content type, body, headers).
    # Not checked: that schema-valid data is accepted (ids that exist, names not taken and the like
    # are not in the schema, so a well-formed request may rightly get a 400, 404 or 409), and that
    # schema-violating data is refused (unknown query parameters are ignored, as by most HTTP APIs,
    # and an object-valued parameter is sent as unknown ones).
    case.call_and_validate(base_url=fuzz_client["base_url"], cookies=fuzz_client["cookies"],
                           headers=fuzz_client["headers"], timeout=60,
                           excluded_checks=[positive_data_acceptance, negative_data_rejection])
