"""The parts of bench/load.py, by what they measure: events, the API, work, resources."""

from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "load.py"  # the helper processes run it with --role


def pct(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")
