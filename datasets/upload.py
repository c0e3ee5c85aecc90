"""Upload progress and the size limit, while the request body streams in.

Django's ASGI handler reads the whole body before any view or upload handler runs, so the live
part of an upload is only visible at the ASGI layer: this middleware counts body bytes as they
arrive, publishes `upload_progress` to the uploader's `user.<id>` topic a few times a second, and
answers 413 as soon as the body passes DATASET_MAX_UPLOAD_MB (Django then never sees it).
"""

from __future__ import annotations

import json
import re
import time
import uuid

from django.conf import settings

from mlops_dashboard.api_errors import problem
from mlops_dashboard.events import apublish
from mlops_dashboard.events.catalog import UploadProgress

UPLOAD_PATHS = ("/api/datasets/", "/datasets/upload/")
FILENAME = re.compile(rb'filename="([^"\r\n]{1,255})"')
INTERVAL = 0.25


def is_upload(scope) -> bool:
    return scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in UPLOAD_PATHS


async def send_too_large(send):
    body = json.dumps(problem(413, f"The file is larger than the {settings.DATASET_MAX_UPLOAD_MB} MB upload "
                                   "limit (DATASET_MAX_UPLOAD_MB).", code="too_large")).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class UploadProgressMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if not is_upload(scope):
            return await self.app(scope, receive, send)
        limit = settings.DATASET_MAX_UPLOAD_MB * 1024 * 1024
        headers = dict(scope.get("headers") or ())
        try:
            total = int(headers.get(b"content-length", b"0"))
        except ValueError:
            total = 0
        if total > limit:
            return await send_too_large(send)
        user = scope.get("user")
        user_id = user.id if user is not None and user.is_authenticated else None
        state = {"received": 0, "filename": None, "last": 0.0, "too_large": False, "started": False}
        began = time.monotonic()
        key = uuid.uuid4().hex

        async def report(done: bool):
            now = time.monotonic()
            if user_id is None or not (done or state["last"] == 0.0 or now - state["last"] >= INTERVAL):
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
            message = await receive()
            if message["type"] != "http.request":
                return message
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
        if state["too_large"] and not state["started"]:
            await send_too_large(send)
