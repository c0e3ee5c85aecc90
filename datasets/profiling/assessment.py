"""The data quality score of a profile: four parts (0-100), their weighted mean, and human findings.

See docs/quality.md for the definitions and a worked example.
"""

from __future__ import annotations

from .columns import MAX_SHOWN_EXAMPLES, quoted
from .schema import ColumnProfile, DatasetProfile, QualityReport

QUALITY_WEIGHTS = {"completeness": 0.40, "validity": 0.25, "uniqueness": 0.20, "consistency": 0.15}


def _pct(share: float) -> str:
    text = f"{100 * share:.1f}"
    if text == "0.0" and share > 0:
        return "<0.1%"
    if text == "100.0" and share < 1:
        return ">99.9%"
    return text + "%"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _example_list(values: list) -> str:
    return ", ".join(repr(quoted(str(v))) for v in values[:MAX_SHOWN_EXAMPLES])


def quality(profile: DatasetProfile) -> QualityReport:
    """A data quality score (0-100, one decimal) and its parts, with human findings.

    ``profile`` is a result of :func:`profile_csv` (or ``DatasetProfile.from_json`` of a stored one).
    """
    rows = profile.rows
    cols = profile.column_profiles
    ncols = len(cols)
    cells = rows * ncols
    missing = profile.missing_cells
    present_cells = cells - missing
    duplicates = profile.duplicate_rows
    invalid = sum(c.invalid_count for c in cols)

    completeness = 100.0 * (1 - missing / cells) if cells else 100.0
    uniqueness = 100.0 * (1 - duplicates / rows) if rows else 100.0
    validity = 100.0 * (1 - invalid / present_cells) if present_cells else 100.0

    findings: list[str] = []
    issue_columns = 0
    for c in cols:
        issue = _column_findings(c, rows, findings)
        if issue:
            issue_columns += 1
    consistency = 100.0 * (1 - issue_columns / ncols) if ncols else 100.0

    if duplicates:
        approx = "about " if profile.duplicate_rows_approximate else ""
        findings.insert(0, f"{approx}{_plural(duplicates, 'duplicate row')} ({_pct(duplicates / rows)} of rows)")
    target = profile.target
    if target and target.found and target.minority_share is not None \
            and (target.classes or 0) >= 2 and target.minority_share < 0.1:
        findings.append(
            f"the target {target.name} is imbalanced: its rarest class is {_pct(target.minority_share)} of rows"
        )

    parts = {"completeness": completeness, "uniqueness": uniqueness, "validity": validity,
             "consistency": consistency}
    score = sum(QUALITY_WEIGHTS[k] * v for k, v in parts.items())
    return QualityReport(
        quality_score=round(max(0.0, min(100.0, score)), 1),
        **{k: round(v, 1) for k, v in parts.items()},
        weights=dict(QUALITY_WEIGHTS),
        findings=findings,
    )


def _column_findings(c: ColumnProfile, rows: int, findings: list[str]) -> bool:
    """Append the column's findings; True when it has a consistency issue."""
    name = c.name
    issue = False
    if c.is_empty and rows:
        findings.append(f"{name} is empty (every value is missing)")
        issue = True
    elif c.missing_share >= 0.05:
        findings.append(f"{name} is {_pct(c.missing_share)} missing")
    elif c.is_target and c.missing_count:
        findings.append(f"the target {name} has {_plural(c.missing_count, 'missing value')}")
    if c.is_constant and not c.is_empty:
        only = c.top_values[0].value if c.top_values else None
        findings.append(f"{name} is constant" + (f" (always {quoted(str(only))!r})" if only is not None else ""))
        issue = True
    if c.looks_like_identifier:
        findings.append(f"{name} looks like an identifier (a different value on almost every row)")
    if c.invalid_count:
        n = c.invalid_count
        what = {"numeric": "not numbers", "datetime": "not dates"}.get(c.type, "invalid")
        if c.infinite_count:
            findings.append(f"{name} has {_plural(n, 'infinite value')}")
        else:
            present = rows - c.missing_count
            text = f"{name} has {_plural(n, 'value')} ({_pct(n / present if present else 0)}) that are {what}"
            if c.invalid_examples:
                text += f", e.g. {_example_list(c.invalid_examples)}"
            findings.append(text)
    if c.whitespace_count:
        findings.append(
            f"{name} has {_plural(c.whitespace_count, 'value')} with leading or trailing spaces"
            + (f", e.g. {_example_list(c.whitespace_examples)}" if c.whitespace_examples else "")
        )
        issue = True
    if c.case_variants:
        findings.append(
            f"{name} has values that differ only in case or spacing: " + " / ".join(repr(quoted(str(v))) for v in c.case_variants[0])
        )
        issue = True
    return issue
