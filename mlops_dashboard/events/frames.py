"""Keep every event frame under WS_MAX_MESSAGE_BYTES (64 KiB), whatever the data it carries.

Values that come from users are capped where they enter (column names, cell values, names and
descriptions), but an event may still gather many of them: the findings of a 2,000-column dataset,
a long list of column names. When a frame would be too large, `fit()` shortens its lists, the
largest first, keeping their first items, and records next to each shortened list how many items
were left off: a list `findings` cut from 5,000 items to 120 gets a sibling `findings_truncated:
4880` in the same object (a top-level field gets a top-level `<field>_truncated`). A client that
needs the whole list reads it from the REST API. docs/events.md describes the rule.

Lists are the only thing shortened on purpose. A frame that is still too large without them holds
a string that was not capped where it entered: a bug. With EVENT_OVERSIZE_STRICT (on in the tests)
`fit()` raises, so the test that sends it fails loudly; in production the longest strings are cut
(ending with "…") and an error is logged, so the event still reaches the sockets.
"""

from __future__ import annotations

import copy
import json
import logging

logger = logging.getLogger(__name__)

TRUNCATED_SUFFIX = "_truncated"
ELLIPSIS = "…"
# Room for the `{"type":"<type>","id":<up to 20 digits>` the bus puts before the body.
_ID_ROOM = 40


class EventTooLarge(ValueError):
    """An event would exceed the frame limit even with its lists shortened."""


def dumps(body) -> str:
    return json.dumps(body, separators=(",", ":"), default=str)


def _size(value) -> int:
    # ensure_ascii (json's default) makes the length of the text its size in bytes.
    return len(dumps(value))


def _lists(value, out: list) -> list:
    """(parent dict, key) of every non-empty list held under a dict key, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, list) and item:
                out.append((value, key))
            _lists(item, out)
    elif isinstance(value, list):
        for item in value:
            _lists(item, out)
    return out


def _strings(value, out: list) -> list:
    """(container, key or index) of every string value, at any depth."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(item, str):
            out.append((value, key))
        else:
            _strings(item, out)
    return out


def _cut_list(parent: dict, key: str, excess: int) -> None:
    """Drop items from the end of parent[key] until at least `excess` bytes are gone."""
    items = parent[key]
    marker = key + TRUNCATED_SUFFIX
    already = parent.get(marker, 0) if isinstance(parent.get(marker), int) else 0
    # The marker itself costs bytes: count it in, with room for its number.
    freed, keep = -(len(marker) + 16), len(items)
    while keep > 0 and freed < excess:
        keep -= 1
        freed += _size(items[keep]) + 1
    parent[key] = items[:keep]
    parent[marker] = already + len(items) - keep


def fit(event_type: str, body: dict, *, limit: int, strict: bool) -> str:
    """The JSON text of `body` (the event's fields and timestamp), shortened to fit a frame of
    `limit` bytes once the bus adds the type and the id."""
    budget = limit - _ID_ROOM - len(event_type)
    text = dumps(body)
    if len(text) <= budget:
        return text
    body = copy.deepcopy(body)
    original = len(text)
    while (excess := _size(body) - budget) > 0:
        lists = _lists(body, [])
        if not lists:
            break
        parent, key = max(lists, key=lambda pk: _size(pk[0][pk[1]]))
        _cut_list(parent, key, excess)
    excess = _size(body) - budget
    if excess <= 0:
        logger.info("event %s: lists shortened to fit a frame (%d -> %d bytes)", event_type, original, _size(body))
        return dumps(body)
    if strict:
        raise EventTooLarge(
            f"event {event_type} is {excess} bytes over the {limit}-byte frame limit once its lists are "
            "shortened: a string in it was not capped where it entered"
        )
    logger.error("event %s: %d bytes over the frame limit without lists; its longest strings are cut",
                 event_type, excess)
    while (excess := _size(body) - budget) > 0:
        strings = [(c, k) for c, k in _strings(body, []) if c[k]]
        if not strings:
            raise EventTooLarge(f"event {event_type} cannot be shortened under {limit} bytes")
        container, key = max(strings, key=lambda ck: _size(ck[0][ck[1]]))
        text = container[key]
        keep = len(text) - max(excess, len(text) // 2) - 1
        container[key] = text[:keep] + ELLIPSIS if keep > 0 else ""
    return dumps(body)
