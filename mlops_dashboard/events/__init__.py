"""Typed events: the catalog (what can be sent) and the bus (how it is sent).

    from mlops_dashboard.events import publish, publish_on_commit, catalog
    publish_on_commit(catalog.DatasetCreated(dataset_id=ds.id, name=ds.name))
"""

from . import catalog
from .bus import apublish, publish, publish_on_commit
from .catalog import build

__all__ = ["apublish", "build", "catalog", "publish", "publish_on_commit"]
