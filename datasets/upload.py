"""Upload progress and the upload limits, while the request body streams in.

Django's ASGI handler reads the whole body before any view or upload handler runs, so the live
part of an upload is only visible at the ASGI layer: this middleware counts body bytes as they
arrive, publishes `upload_progress` to the uploader's `user.<id>` topic a few times a second, and
answers 413 as soon as the body passes DATASET_MAX_UPLOAD_MB (Django then never sees it).

Before a byte of the body is read (asgi.py has looked the user up): an anonymous upload is refused
(nothing is spooled to disk), so is one to a project the user may not upload to (the check the
datasets app registers with request_bodies.register_body_check: 404, 403 naming the role, 400), and
a user with UPLOADS_PER_USER uploads streaming, on any server process, gets 429. A body that pauses longer than WEB_BODY_TIMEOUT gets 408.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

from django.conf import settings

from mlops_dashboard import leases, request_bodies
from mlops_dashboard.events import apublish
from mlops_dashboard.events.catalog import UploadProgress

# Telemetry's CSV imports of history stream the same way (their check: telemetry/apps.py).
UPLOAD_PATHS = ("/api/datasets/", "/datasets/upload/", "/api/telemetry/import/")
FILENAME = re.compile(rb'filename="([^"\r\n]{1,255})"')
INTERVAL = 0.25


def is_upload(scope) -> bool:
    return scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in UPLOAD_PATHS


async def send_too_large(scope, send):
    await request_bodies.send_problem(
        scope, send, 413, f"The file is larger than the {settings.DATASET_MAX_UPLOAD_MB} MB upload limit "
                          "(DATASET_MAX_UPLOAD_MB).", code="too_large")


async def send_too_many(scope, send):
    await request_bodies.send_problem(
        scope, send, 429, f"You already have {settings.UPLOADS_PER_USER} uploads streaming (UPLOADS_PER_USER); "
                          "wait for one to finish.", code="too_many_uploads")


class UploadProgressMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if not is_upload(scope):
            return await self.app(scope, receive, send)
        user = scope.get("user")
        if user is None or not user.is_authenticated:
            return await request_bodies.refuse_anonymous(scope, send)
        if await request_bodies.refuse_before_body(scope, send, user):
            return
        limit = settings.DATASET_MAX_UPLOAD_MB * 1024 * 1024
        total = request_bodies.content_length(scope) or 0
        if total > limit:
            return await send_too_large(scope, send)
        async with leases.lease(f"uploads:user.{user.id}", settings.UPLOADS_PER_USER) as held:
            if not held:
                return await send_too_many(scope, send)
            await self.stream(scope, receive, send, user.id, total, limit)

    async def stream(self, scope, receive, send, user_id, total, limit):
        state = {"received": 0, "filename": None, "last": 0.0, "too_large": False, "started": False,
                 "complete": False, "timed_out": False}
        began = time.monotonic()
        key = uuid.uuid4().hex

        async def report(done: bool):
            now = time.monotonic()
            if not (done or state["last"] == 0.0 or now - state["last"] >= INTERVAL):
                return
            state["last"] = now
            received = state["received"]
            elapsed = max(now - began, 1e-6)
            speed = received / elapsed
            size = max(total, received)
            name = state["filename"].decode("utf-8", "replace") if state["filename"] else "upload"
            await apublish(UploadProgress(
                filename=name,
                bytes_uploaded=received, total_bytes=size,
                progress_percent=round(100.0 * received / size, 1) if size else 100.0,
                upload_speed=round(speed, 1),
                estimated_time_remaining=round((size - received) / speed, 2) if speed > 0 else 0.0,
                user_id=user_id, upload_key=key,
            ))

        async def counting_receive():
            if state["complete"]:  # Django listening for the client leaving while it answers
                return await receive()
            try:
                async with asyncio.timeout(settings.WEB_BODY_TIMEOUT):
                    message = await receive()
            except TimeoutError:
                state["timed_out"] = True
                return {"type": "http.disconnect"}  # Django stops reading; 408 below
            if message["type"] != "http.request":
                return message
            state["complete"] = not message.get("more_body", False)
            body = message.get("body", b"")
            state["received"] += len(body)
            if state["filename"] is None and body:
                found = FILENAME.search(body[:16384])
                if found:
                    state["filename"] = found.group(1)
            if state["received"] > limit:
                state["too_large"] = True
                return {"type": "http.disconnect"}  # Django stops reading and answers nothing
            await report(done=not message.get("more_body", False))
            return message

        async def tracking_send(message):
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, counting_receive, tracking_send)
        if state["started"]:
            return
        if state["too_large"]:
            await send_too_large(scope, send)
        elif state["timed_out"]:
            await request_bodies.send_timeout(scope, send)
