"""What the test session saw of the event catalog, Zulip-style: every registered event type must be
sent by the product in some test and checked there, field by field.

"Sent" is what reached the bus log (read by the `events` fixture) or a test's socket (`Socket.recv`).
"Checked" is what a test asserted on with `expect`: an event of the type whose fields have the given
values. The last test of a whole-suite run (test_event_coverage.py) names every type
that was not both.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlops_dashboard.events import bus
from mlops_dashboard.events.catalog import REGISTRY

sent: set[str] = set()
checked: set[str] = set()
deselected = False  # some collected test was left out of the run (-k, -m, --lf, --deselect)
COVERAGE_TEST = "test_every_catalog_event_type_is_sent_and_checked"


def saw(events: list[dict]) -> list[dict]:
    sent.update(e.get("type") for e in events)
    return events


def _same(value, expected) -> bool:
    # An object field (an alert, an activity, chart points) matches on the keys the test names, and
    # an array item by item.
    if isinstance(expected, dict) and isinstance(value, dict):
        return all(k in value and _same(value[k], v) for k, v in expected.items())
    if isinstance(expected, list) and isinstance(value, list):
        return len(value) == len(expected) and all(map(_same, value, expected))
    return value == expected


def matches(event: dict, type_: str, fields: dict) -> bool:
    return event.get("type") == type_ and all(k in event and _same(event[k], v) for k, v in fields.items())


def expect(events: list[dict], type_: str, /, **fields) -> dict:
    """The last of `events` of this type whose fields have these values (an object: these of its keys;
    an array: item by item); fails showing the events of the type that were seen. Marks the type
    checked."""
    if type_ not in REGISTRY:
        raise AssertionError(f"{type_!r} is not an event in the catalog")
    if not fields:
        raise AssertionError("expect() checks fields: name at least one with the value it must have")
    saw(events)
    found = [e for e in events if matches(e, type_, fields)]
    if not found:
        same_type = [e for e in events if e.get("type") == type_]
        raise AssertionError(f"no {type_} event with {fields}; {len(same_type)} of the type seen, the last: "
                             f"{same_type[-5:]}")
    checked.add(type_)
    return found[-1]


def unchecked() -> dict[str, list[str]]:
    return {
        "never sent": sorted(set(REGISTRY) - sent),
        "sent, never checked": sorted((set(REGISTRY) & sent) - checked),
    }


def whole_suite(config) -> bool:
    """Whether this run is the whole suite: only then can a type nobody checked be blamed on the suite."""
    tests_dir = Path(__file__).resolve().parent
    paths = [(config.invocation_params.dir / str(arg).split("::")[0]).resolve() for arg in config.args]
    return not deselected and all(tests_dir.is_relative_to(path) for path in paths)


class EventLog:
    """The `events` fixture: the bus log since the test began, oldest first.

    `events(*types)` lists the events (of those types, or all); `events.expect(type, **fields)`
    asserts one of them has these field values and returns the last such event.
    """

    def __init__(self):
        self.start = bus.latest_id()

    def __call__(self, *types: str) -> list[dict]:
        out = saw([json.loads(text) for _, _, text in bus.read_after(self.start, 10_000).events])
        return [e for e in out if not types or e["type"] in types]

    def expect(self, type_: str, /, **fields) -> dict:
        return expect(self(type_), type_, **fields)
