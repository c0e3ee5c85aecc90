"""The public CSVs the tests read, found without Django (test_trainer.py also runs without it)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_csv(name: str | Path) -> Path:
    """A real public CSV from ../shared/data (titanic, penguins), beside the repository; an absolute
    path is returned as it is."""
    path = Path(name)
    if path.is_absolute():
        return path
    for root in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if (root / path).exists():
            return root / path
    raise FileNotFoundError(f"{name} not found in ../shared/data")
