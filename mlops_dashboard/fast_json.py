"""DRF's JSON parser and renderer, with orjson doing the work where it gives the same result.

A 1,000-row prediction spent about a sixth of the server's time in the json module, reading the body
and writing the answer. These do it with orjson (pinned in requirements.txt), three to five times
faster, and leave every case where orjson could differ to DRF's own classes:

- reading: a body in another charset than UTF-8, one orjson refuses (invalid JSON, NaN, a number
  out of a double's range, a lone surrogate: DRF then gives its own answer and error), and one
  holding a run of 19 digits or more (orjson reads an integer past 64 bits as a float, where json
  keeps it exact);
- writing: an indented answer asked for (`Accept: application/json; indent=4`), settings asking
  for ASCII or spaced JSON (UNICODE_JSON, COMPACT_JSON), and any value
  orjson cannot write the way DRF does (keys that are not strings). Dates, times, decimals, lazy
  strings and numpy values go through DRF's own encoder (`default`), so they read as before.

Float values are written in their shortest exact form by both, sometimes spelled differently (1e16
against 1e+16): the same numbers once read. U+2028 and U+2029 are left raw, as JSON allows, where DRF
escapes them for JavaScript embedding, which an API answer never is. A NaN result becomes null
rather than an error.
"""

from __future__ import annotations

import io

import orjson
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings

# A run of 19 digits or more, found by mapping every digit to "9" and looking for 19 of them: a
# regular expression took 2 ms over a 1,000-row body, this a tenth of that.
_DIGITS = bytes.maketrans(b"012345678", b"999999999")
_LONG_RUN = b"9" * 19


def _long_number(body: bytes) -> bool:
    return _LONG_RUN in body.translate(_DIGITS)


_NOT_READ = object()


def orjson_or_none(body: bytes):
    """The UTF-8 body as orjson reads it where that is what json gives (no run of 19 digits or
    more), else None (also for invalid JSON: DRF's parser then answers)."""
    result = _read(body)
    return None if result is _NOT_READ else result


def _read(body: bytes):
    if _long_number(body):
        return _NOT_READ
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _NOT_READ


_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME
_encoder = JSONEncoder()


class FastJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read() if stream is not None else b""
        charset = (parser_context or {}).get("encoding") or "utf-8"
        if charset.lower().replace("_", "-") in ("utf-8", "utf8"):
            result = _read(body)
            if result is not _NOT_READ:
                return result
        # DRF's answer, with its error
        return super().parse(io.BytesIO(body), media_type, parser_context)


class FastJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        if (self.compact and not self.ensure_ascii
                and self.get_indent(accepted_media_type, renderer_context or {}) is None):
            try:
                return orjson.dumps(data, default=_encoder.default, option=_OPTIONS)
            except TypeError:
                pass  # something orjson writes otherwise than DRF: DRF writes it
        return super().render(data, accepted_media_type, renderer_context)


def fast(classes: list, slow, quick) -> list:
    """`classes` with `slow` replaced by `quick`."""
    return [quick if c is slow else c for c in classes]


PARSER_CLASSES = fast(api_settings.DEFAULT_PARSER_CLASSES, JSONParser, FastJSONParser)
RENDERER_CLASSES = fast(api_settings.DEFAULT_RENDERER_CLASSES, JSONRenderer, FastJSONRenderer)
