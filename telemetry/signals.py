"""What telemetry tells other apps, without importing them: they connect in their `ready()`."""

from django.dispatch import Signal

# Sent on commit of an ingest, once per request: `project_id`, and `batches`, a list of
# telemetry.services.SeriesBatch (one per series written, its points in time order).
points_ingested = Signal()
