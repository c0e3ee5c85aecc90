"""Render docs/events.md from the catalog (`manage.py events_doc > docs/events.md`)."""

from itertools import groupby

from .catalog import CONNECTION, REGISTRY, RENAMED, field_docs

HEADER = """# Events

Generated from `mlops_dashboard/events/catalog.py` by `make docs` (`manage.py events_doc`); a test
fails when this file and the catalog differ. Do not edit by hand.

## On the wire

Each event is one JSON object: `type`, `id` (an integer, strictly increasing across every process
of the system), `timestamp` (ISO 8601, UTC, with microseconds), then the event's own fields at the
top level. Optional fields (marked *optional*) are left out when they have no value.

An event is at most 64 KiB of JSON (`WS_MAX_MESSAGE_BYTES`). Text a user sends is capped where it
enters (names, descriptions, column names, quoted cell values), so only lists can make an event
larger; such an event has its largest lists shortened, keeping their first items, and each
shortened list gets a sibling `<name>_truncated` holding the number of items left off: a top-level
`suggestions` cut to 300 items comes with `"suggestions_truncated": 9700`, a `findings` list inside
`stats` with `stats.findings_truncated`. Read the whole list from the REST API.

- Connect to `/ws/` (session cookie, or `Authorization: Token <key>` for programs). The socket
  joins `dashboard`, `user.<your id>` and `project.<id>` of each project you are a member of
  (staff: every project, and `staff`); a token limited to a project narrows this to that project,
  and a `predict` or `telemetry` token opens no socket (`error` `forbidden_scope`, close `4403`).
  When you are added to a project or removed from one, your open sockets join or leave its topic
  within moments and you get `projects_changed`. Add `?last_event_id=N` to get every logged event after
  `N` first, then live ones, with no gap and no duplicate. When `N` is older than the log (the
  last 10,000 events and at most 64 MB of them by default, `EVENT_LOG_SIZE` and
  `EVENT_LOG_MAX_BYTES`), the socket sends `error` with code
  `replay_gap` and `latest_id`: reload state from the REST API and carry on from `latest_id`.
- Send `{"type": "ping", "ts": ...}` to get `pong`; `{"type": "subscribe" | "unsubscribe",
  "topics": [...]}` to follow object topics: each needs the view permission on its object, else
  `error` `forbidden_topic` (also for an object that does not exist); leaving a project leaves its
  objects' topics. Object topics may also be named on connect, `?last_event_id=N&topics=dataset.3,telemetry.7`
  (checked alike; refused ones are left out and named in one `forbidden_topic` error), so that the
  replay after `N` covers them too. Messages over 64 KiB, malformed or unknown ones are answered with `error`.
- `GET /api/events/?after=N&limit=100` returns the same logged events as JSON, those a socket of
  yours would get now: the polling fallback. `&topics=training_job.12,dataset.3` adds object
  topics, as `subscribe` does; those you may not view are listed in `refused_topics`. A page holds at most `limit` events and 1 MB of them (`EVENTS_PAGE_MAX_BYTES`): page on
  with `after=next_after` while `has_more` is true.
- Progress events (`coalesced per` below) are sent at most a few times a second per job, always the
  first and the latest; the event that ends a job comes after its last progress.
- Connection events (`pong`, `error`) answer one socket: their `id` is `null`, and they are never
  logged or replayed.
- Close codes: `4401` not logged in (go to the login page); `1013` the socket fell
  `WS_MAX_BACKLOG` events behind (it was not reading): reconnect with `last_event_id`. After any
  other drop, reconnect with `last_event_id` too. If the server's connection to Redis was lost,
  the open socket gets what it missed from the log, or `replay_gap` when Redis lost it.

## Topics

| topic | who gets it |
| --- | --- |
| `dashboard` | every signed-in socket (joined on connect): host metrics, health, system alerts |
| `user.<id>` | that user's sockets only (joined on connect): their uploads, their projects |
| `project.<id>` | the project's members and staff (joined on connect, and on being added): its objects |
| `staff` | staff sockets (joined on connect): activity lines of no project (logins) |
| `dataset.<id>`, `processing_job.<id>`, `training_job.<id>`, `model.<id>`, `pipeline.<id>`, `pipeline_run.<id>` | sockets that subscribed and may view the object, for pages that follow one thing |
| `telemetry.<source id>` | sockets that subscribed and may view the source: its live points |
| `telemetry_project.<project id>` | nothing is sent on it: a socket of a project member subscribes while it shows the project's Telemetry page, and meanwhile the project's sources send `telemetry_points` to `project.<id>` too |
"""


def render() -> str:
    out = [HEADER]
    classes = list(REGISTRY.values())
    for group, members in groupby(classes, key=lambda c: c.group):
        out.append(f"\n## {group}\n")
        for cls in members:
            out.append(f"\n### `{cls.type}`\n\n{cls.description()}\n")
            if cls.topics == (CONNECTION,):
                out.append("\nTopics: this socket only.\n")
            else:
                out.append("\nTopics: " + ", ".join(f"`{t}`" for t in cls.topics) + ".")
                if cls.coalesce_by:
                    out.append(f" Coalesced per `{cls.coalesce_by}`.")
                if cls.closes:
                    out.append(" Ends: " + ", ".join(f"`{c}`" for c in cls.closes) + ".")
                out.append("\n")
            out.append("\n| field | type | |\n| --- | --- | --- |\n")
            for name, type_name, optional in field_docs(cls):
                out.append(f"| `{name}` | {type_name} | {'optional' if optional else ''} |\n")
    out.append("\n## Names from earlier drafts\n\n| old name | replaced by |\n| --- | --- |\n")
    for old, new in RENAMED.items():
        out.append(f"| `{old}` | `{new}` |\n")
    return "".join(out)
