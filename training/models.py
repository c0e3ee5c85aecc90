"""Tables of the training app (filled in by its issue)."""
