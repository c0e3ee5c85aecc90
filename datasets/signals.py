"""Signal handlers of the datasets app."""

from __future__ import annotations


def delete_dataset_file(sender, instance, **kwargs):
    """A dataset's stored file goes with its row, however the row goes (the service, the admin, a
    cascade), once the deletion has committed (a rolled-back delete keeps its file)."""
    from django.core.files.storage import default_storage
    from django.db import transaction

    name = instance.file.name if instance.file else ""
    if name:
        transaction.on_commit(lambda: default_storage.delete(name))
