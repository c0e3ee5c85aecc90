"""The profile as a typed contract: what :func:`profile_csv` and :func:`quality` return.

``Dataset.profile`` and ``Dataset.quality`` store ``to_json()`` of these dataclasses, and every
reader goes through ``from_json()``. The JSON keeps the keys, shapes and key order the profile has
always been stored with, so stored rows load and new ones look like old ones.

Which optional keys a column carries depends on its type (see :class:`ColumnProfile`); a field
left as None is omitted from the JSON, except a numeric column's statistics, which are always
there (None where there is no finite value).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]
Number = int | float
COLUMN_TYPES = ("numeric", "categorical", "boolean", "datetime", "text")


def _json(value: Any) -> Any:
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value):
        return value.to_json()
    return value


def _known(cls, data: JSON) -> JSON:
    """The keys of ``data`` that are fields of ``cls`` (stored JSON may carry keys we no longer use)."""
    return {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}


def _top_values(data: list | None) -> list[TopValue] | None:
    return None if data is None else [TopValue.from_json(v) for v in data]


@dataclass(frozen=True, slots=True)
class TopValue:
    """One of a column's most frequent values (as text) and how many rows hold it."""

    value: str
    count: int

    def to_json(self) -> JSON:
        return {"value": self.value, "count": self.count}

    @classmethod
    def from_json(cls, data: JSON) -> TopValue:
        return cls(value=data.get("value", ""), count=data.get("count", 0))


@dataclass(frozen=True, slots=True)
class Histogram:
    """Bin edges (one more than counts) and counts; approximate when drawn from a sample."""

    bins: list[float | None] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    approximate: bool = False

    def to_json(self) -> JSON:
        return {"bins": list(self.bins), "counts": list(self.counts), "approximate": self.approximate}

    @classmethod
    def from_json(cls, data: JSON) -> Histogram:
        return cls(**_known(cls, data))


# Keys of a column's JSON, in stored order. Numeric columns put their statistics before their top
# values; the others (boolean, categorical, text, datetime) their top values first.
_COLUMN_HEAD = ("name", "type", "arrow_type", "missing_count", "missing_share", "distinct_count",
                "distinct_approximate", "memory_bytes", "invalid_count", "invalid_examples", "is_target",
                "is_empty")
_NUMERIC_STATS = ("min", "max", "mean", "std", "quantiles", "quantiles_approximate", "histogram", "top_values",
                  "integer")
_OTHER_STATS = ("top_values", "top_values_approximate", "min", "max", "mean")
_COLUMN_TAIL = ("infinite_count", "mean_length", "max_length", "whitespace_count", "whitespace_examples",
                "case_variants", "is_constant", "looks_like_identifier")
_ALWAYS = frozenset(_COLUMN_HEAD + ("is_constant", "looks_like_identifier"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ColumnProfile:
    """One column: its inferred type, missing and distinct values, and what its type adds.

    * numeric: min, max, mean, std, quantiles (p5 ... p95), quantiles_approximate, histogram,
      integer, and top_values when it has few distinct values;
    * boolean, categorical, text: top_values, top_values_approximate (and mean for 0/1 numbers);
    * datetime: min, max (ISO 8601);
    * read as numbers: infinite_count; read as strings: whitespace_count, whitespace_examples,
      case_variants, and for boolean, categorical and text mean_length, max_length.
    """

    name: str = ""
    type: str = "text"
    arrow_type: str = ""
    missing_count: int = 0
    missing_share: float = 0.0
    distinct_count: int = 0
    distinct_approximate: bool = False
    memory_bytes: int = 0
    invalid_count: int = 0
    invalid_examples: list[str] = field(default_factory=list)
    is_target: bool = False
    is_empty: bool = False
    is_constant: bool = False
    looks_like_identifier: bool = False
    min: Number | str | None = None
    max: Number | str | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float | None] | None = None
    quantiles_approximate: bool | None = None
    histogram: Histogram | None = None
    integer: bool | None = None
    top_values: list[TopValue] | None = None
    top_values_approximate: bool | None = None
    infinite_count: int | None = None
    mean_length: float | None = None
    max_length: int | None = None
    whitespace_count: int | None = None
    whitespace_examples: list[str] | None = None
    case_variants: list[list[str]] | None = None

    def _carries(self, key: str) -> bool:
        if key in _ALWAYS:
            return True
        if self.type == "numeric" and key in _NUMERIC_STATS and key != "top_values":
            return True
        if key == "mean_length":  # None for a column without values, but there all the same
            return self.max_length is not None
        return getattr(self, key) is not None

    def to_json(self) -> JSON:
        stats = _NUMERIC_STATS if self.type == "numeric" else _OTHER_STATS
        return {key: _json(getattr(self, key)) for key in (*_COLUMN_HEAD, *stats, *_COLUMN_TAIL)
                if self._carries(key)}

    @classmethod
    def from_json(cls, data: JSON) -> ColumnProfile:
        known = _known(cls, data)
        if known.get("histogram") is not None:
            known["histogram"] = Histogram.from_json(known["histogram"])
        known["top_values"] = _top_values(known.get("top_values"))
        return cls(**known)


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetSummary:
    """The target column, when one was named: its type and what a model would learn from it.

    ``task`` is classification (then classes, class_counts and minority_share, the rarest class's
    share, None when the counts are approximate), regression, or None.
    """

    name: str
    found: bool = False
    type: str | None = None
    missing_count: int | None = None
    task: str | None = None
    classes: int | None = None
    class_counts: list[TopValue] | None = None
    minority_share: float | None = None

    def to_json(self) -> JSON:
        out: JSON = {"name": self.name, "found": self.found}
        if not self.found:
            return out
        out.update(type=self.type, missing_count=self.missing_count, task=self.task)
        if self.task == "classification":
            out.update(classes=self.classes, class_counts=_json(self.class_counts), minority_share=self.minority_share)
        return out

    @classmethod
    def from_json(cls, data: JSON) -> TargetSummary:
        known = _known(cls, data)
        known["class_counts"] = _top_values(known.get("class_counts"))
        return cls(**{"name": "", **known})


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetProfile:
    """The whole file: sizes, duplicates, missing cells, type counts, the target, every column."""

    rows: int = 0
    columns: int = 0
    duplicate_rows: int = 0
    duplicate_rows_approximate: bool = False
    duplicate_share: float = 0.0
    memory_bytes: int = 0
    missing_cells: int = 0
    missing_share: float = 0.0
    column_types: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COLUMN_TYPES, 0))
    target: TargetSummary | None = None
    column_profiles: list[ColumnProfile] = field(default_factory=list)
    encoding: str = ""
    delimiter: str = ""
    file_size: int = 0
    profile_time: float = 0.0
    restarts: int = 0

    def to_json(self) -> JSON:
        return {f.name: _json(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: JSON) -> DatasetProfile:
        known = _known(cls, data)
        if known.get("target") is not None:
            known["target"] = TargetSummary.from_json(known["target"])
        known["column_profiles"] = [ColumnProfile.from_json(c) for c in known.get("column_profiles") or []]
        if known.get("column_types") is None:
            known.pop("column_types", None)
        return cls(**known)

    def column(self, name: str) -> ColumnProfile | None:
        return next((c for c in self.column_profiles if c.name == name), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class QualityReport:
    """A 0-100 quality score, its four parts (each 0-100), their weights, and human findings."""

    quality_score: float
    completeness: float
    uniqueness: float
    validity: float
    consistency: float
    weights: dict[str, float] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)

    def to_json(self) -> JSON:
        return {f.name: _json(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: JSON) -> QualityReport:
        return cls(**_known(cls, data))
