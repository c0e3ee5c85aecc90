"""The trainer's errors: each one can be shown to the user (a stable code, a sentence, hints)."""

from __future__ import annotations

from typing import Any


class TrainingError(Exception):
    """A training failure that can be shown to the user.

    ``code`` is a stable machine-readable string, ``message`` a human sentence
    and ``suggestions`` a list of human hints on how to fix it.
    """

    default_code = "TRAINING_ERROR"

    def __init__(self, message: str, *, code: str | None = None, suggestions: list[str] | None = None):
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.suggestions = list(suggestions or [])

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "suggestions": list(self.suggestions)}

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class TrainingCancelled(TrainingError):
    """Raised when ``should_stop()`` returned True."""

    default_code = "CANCELLED"

    def __init__(self, message: str = "Training was cancelled.", *, code: str | None = None,
                 suggestions: list[str] | None = None):
        super().__init__(message, code=code or "CANCELLED", suggestions=suggestions)


class ArtifactIntegrityError(TrainingError):
    """The artifact bytes do not match the recorded sha256."""

    default_code = "ARTIFACT_INTEGRITY"


class InvalidInputError(TrainingError):
    """Prediction instances do not match the feature schema; ``errors`` lists why."""

    default_code = "INVALID_INPUT"

    def __init__(self, errors: list[str], message: str | None = None):
        self.errors = list(errors)
        super().__init__(
            message or f"{len(self.errors)} problem(s) with the prediction input.",
            code="INVALID_INPUT",
            suggestions=self.errors[:20],
        )

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["errors"] = list(self.errors)
        return d
