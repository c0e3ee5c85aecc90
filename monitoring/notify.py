"""Sending through apprise, and keeping its URLs' secrets out of sight. No Django imports.

A channel's URL is an apprise URL (`mailto://`, `slack://`, `json://`, ...). It holds secrets (a
password, a webhook token), so what is shown is `mask(url)`: the scheme and host, every secret as
***; and every error text that could quote the URL goes through `scrub(text, url)` first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import apprise

MASK = "***"
URL_MAX_LENGTH = 2000


class InvalidURL(ValueError):
    pass


@dataclass(frozen=True)
class SendResult:
    ok: bool
    error: str = ""


def _plugin(url: str):
    if not isinstance(url, str) or not url.strip():
        raise InvalidURL("Give an apprise URL, e.g. mailto://…, slack://…, json://host/path.")
    if len(url) > URL_MAX_LENGTH:
        raise InvalidURL(f"At most {URL_MAX_LENGTH} characters.")
    if "://" not in url:
        raise InvalidURL("An apprise URL starts with its scheme: mailto://, slack://, json://, ntfy://, …")
    plugin = apprise.Apprise.instantiate(url.strip())
    if not plugin:
        scheme = url.split("://", 1)[0]
        raise InvalidURL(f"{scheme}:// is not a service apprise knows, or the URL is incomplete "
                         "(see https://github.com/caronc/apprise/wiki for each service's form).")
    return plugin


def describe(url: str) -> tuple[str, str]:
    """(the service's name, the masked URL); InvalidURL when apprise cannot use it."""
    plugin = _plugin(url)
    return str(getattr(plugin, "service_name", "") or url.split("://", 1)[0])[:64], mask(url)


def mask(url: str) -> str:
    """scheme://host[:port], with *** for the user, the password, the path and the query: what may
    be shown to anyone who may see the channel."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return MASK
    scheme = (parts.scheme or "").lower()
    host = parts.hostname or ""
    # Services whose "host" is itself a token (slack://TokenA/TokenB/…) show no host.
    if scheme in {"slack", "discord", "msteams", "teams", "tgram", "pover", "pbul", "gotify", "ntfy", "ntfys"} \
            and host not in ("localhost", "127.0.0.1") and "." not in host:
        host = MASK
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    userinfo = f"{MASK}@" if (parts.username or parts.password) else ""
    rest = f"/{MASK}" if (parts.path.strip("/") or parts.query) else ""
    return f"{scheme}://{userinfo}{host}{port}{rest}"


def secrets_of(url: str) -> list[str]:
    """Every piece of the URL that could be a secret: the whole, its user and password, its path
    segments and query values (the longest first, so a piece inside another is replaced after it)."""
    pieces = {url}
    try:
        parts = urlsplit(url)
        pieces.update(p for p in (parts.username, parts.password) if p)
        pieces.update(seg for seg in parts.path.split("/") if seg)
        pieces.update(v for _, v in parse_qsl(parts.query) if v)
        if parts.hostname and "." not in parts.hostname and parts.hostname not in ("localhost",):
            pieces.add(parts.hostname)
    except ValueError:
        pass
    pieces |= {unquote(p) for p in pieces}
    return sorted((p for p in pieces if len(p) >= 4), key=len, reverse=True)


def scrub(text: str, *urls: str) -> str:
    """`text` without any secret of these URLs (each replaced by ***)."""
    text = str(text or "")
    for url in urls:
        if not url:
            continue
        for secret in secrets_of(url):
            text = text.replace(secret, MASK)
    # apprise's own privacy form of a token (first...last character) can still name the service's id.
    return re.sub(r"\b\w\.\.\.\w\b", MASK, text)


def with_recipient(url: str, email: str) -> str:
    """An email URL sending to `email` instead of its own recipients."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in ("to", "cc", "bcc")]
    query.append(("to", email))
    return urlunsplit((parts.scheme, parts.netloc, "", urlencode(query), ""))


def send(url: str, *, title: str, body: str, timeout: float = 15.0, body_format: str = "text") -> SendResult:
    """Send one message; never raises. The error (when it failed) is apprise's, scrubbed."""
    try:
        plugin = _plugin(url)
        plugin.socket_connect_timeout = timeout
        plugin.socket_read_timeout = timeout
        sender = apprise.Apprise()
        sender.add(plugin)
        result = sender.notify(body=body, title=title, body_format=body_format, timeout=timeout,
                               log_level=30)  # WARNING and above: what went wrong
    except InvalidURL as exc:
        return SendResult(False, str(exc))
    except Exception as exc:  # apprise's plugins raise what their transports raise
        return SendResult(False, scrub(f"{type(exc).__name__}: {exc}", url)[:1000])
    if result:
        return SendResult(True)
    try:
        messages = [entry.asdict().get("message", "") for entry in result.logs()]
    except Exception:
        messages = []
    error = "; ".join(m for m in messages if m) or "The service did not accept the message."
    return SendResult(False, scrub(error, url)[:1000])
