"""The errors training's services raise for a request they cannot carry out."""


class Conflict(Exception):
    """The request is valid but the object's state does not allow it (the API answers 409)."""


class ArtifactError(Exception):
    """A version's artifact is missing or does not match its checksum (the version is now error)."""
