"""Every event type of the catalog is sent by the product and checked, field by field, by some test.

tests/conftest.py runs this test after all others; it judges only a run of the whole suite.
"""

import pytest

from tests import events as event_record


def test_every_catalog_event_type_is_sent_and_checked(request):
    if not event_record.whole_suite(request.config):
        pytest.skip("judged only when the whole suite runs")
    missing = {what: types for what, types in event_record.unchecked().items() if types}
    assert not missing, "catalog event types no test both sent and checked with events.expect(...): " + "; ".join(
        f"{what}: {', '.join(types)}" for what, types in missing.items())
