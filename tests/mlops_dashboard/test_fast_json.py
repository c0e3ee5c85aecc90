"""orjson where it gives what json gives (mlops_dashboard/fast_json.py): every body reads as DRF's
JSONParser reads it, with the same error where DRF refuses it, and every answer reads back as DRF's
JSONRenderer's does."""

import datetime
import decimal
import io
import json
import uuid

import numpy as np
import pytest
from django.utils.translation import gettext_lazy
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer

from mlops_dashboard.fast_json import FastJSONParser, FastJSONRenderer

BODIES = [
    b'{"instances": [{"age": 22, "sex": "male", "fare": 7.25, "cabin": null, "alone": true}]}',
    b'{"a": 123456789012345678901234, "b": -9223372036854775809}',  # past 64 bits: exact
    b'{"a": 18446744073709551615, "b": 0.1234567890123456789}',
    b'{"a": NaN}',  # DRF refuses it
    b'{"a": Infinity}',
    b'{"a": 1.0e400}',  # json reads inf, orjson refuses: DRF's reading
    b'{"a": "\\ud800"}',  # a lone surrogate: json keeps it, orjson refuses
    b'\xef\xbb\xbf{"a": 1}',  # a BOM
    b'{"a": 1,}',
    b'{"a": "caf\xc3\xa9", "a": 2}',
    b'[1, 2, 3]',
    b'"just a string"',
    b'',
]


def outcome(parser, body: bytes, encoding: str = "utf-8"):
    try:
        return "ok", parser.parse(io.BytesIO(body), "application/json", {"encoding": encoding})
    except ParseError as exc:
        return "error", str(exc.detail)


@pytest.mark.parametrize("body", BODIES)
def test_every_body_reads_as_drf_reads_it(body):
    fast, drf = outcome(FastJSONParser(), body), outcome(JSONParser(), body)
    if fast[0] == "ok" and isinstance(fast[1], dict) and any(isinstance(v, float) and v != v for v in fast[1].values()):
        pytest.fail("NaN read")
    assert fast == drf or (fast[0] == drf[0] == "ok" and repr(fast[1]) == repr(drf[1]))
    if body.startswith(b'{"a": 1234'):
        assert fast[1]["a"] == 123456789012345678901234 and isinstance(fast[1]["a"], int)


def test_a_body_in_another_charset_reads_as_drf_reads_it():
    body = '{"name": "café"}'.encode("latin-1")
    assert outcome(FastJSONParser(), body, "latin-1") == outcome(JSONParser(), body, "latin-1") == ("ok", {"name": "café"})


ANSWERS = [
    {"predictions": [0, 1, 1], "probabilities": [{"0": 0.25, "1": 0.75}], "model_name": "café ☕"},
    {"when": datetime.datetime(2026, 12, 6, 10, 0, 0, 123456, tzinfo=datetime.timezone.utc),
     "day": datetime.date(2026, 12, 6), "at": datetime.time(10, 0)},
    {"price": decimal.Decimal("1.10"), "id": uuid.UUID(int=5), "lazy": gettext_lazy("Not found.")},
    {"array": np.arange(3), "scalar": np.float64(0.5), "int": np.int64(7)},
    {1: "an int key", "big": 10**30, "float": 1e16, "tiny": 5e-324, "line": "a\u2028b"},
    [1, "two", None, True, 3.5],
]


@pytest.mark.parametrize("data", ANSWERS)
def test_every_answer_reads_back_as_drfs_does(data):
    fast, drf = FastJSONRenderer().render(data), JSONRenderer().render(data)
    assert json.loads(fast) == json.loads(drf)


def test_an_indented_answer_is_drfs():
    data = {"a": [1, 2]}
    assert FastJSONRenderer().render(data, "application/json; indent=4") == JSONRenderer().render(data, "application/json; indent=4")
