"""Tables of the datasets app (filled in by its issue)."""
