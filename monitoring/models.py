"""Tables of the monitoring app (filled in by its issue)."""
