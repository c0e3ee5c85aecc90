"""Tables of the pipelines app (filled in by its issue)."""
