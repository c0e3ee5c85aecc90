"""Retention: every kind of row or file that grows without end, and the beat job that prunes it.

Each app registers the kinds it keeps (`register(StorageKind(...))` in its AppConfig.ready()), as it
registers its kinds of job: the core never names an app. A kind names
- its tables (`models`), measured by the storage report (mlops_dashboard/storage.py);
- its retention `setting` (days, or hours; 0 keeps forever) and its `pruner`, a dotted path to a
  function of the cutoff time that deletes what is older (in batches: `delete_in_batches`) and
  returns how many rows went;
- its folder under MEDIA_ROOT (`directory`) and `referenced`, a dotted path to a function returning
  the names (relative to MEDIA_ROOT) that rows still refer to: any other file there older than
  RETENTION_ORPHAN_FILES_HOURS is an orphan and goes.

Beat runs `prune_all()` (`mlops_dashboard.retention_prune`, hourly).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StorageKind:
    key: str  # "activity", "pipeline_runs": in the report and the prune results
    label: str  # "Activity feed"
    models: tuple[str, ...] = ()  # "app_label.Model": the tables it weighs
    setting: str = ""  # the retention setting; "" with a pruner: prune up to now (expired rows)
    unit: str = "days"  # of the setting: "days" or "hours"
    pruner: str = ""
    directory: str = ""  # under MEDIA_ROOT
    referenced: str = ""

    @property
    def retention(self) -> int | None:
        """The setting's value (0: keep forever), None when the kind has no retention setting."""
        return int(getattr(settings, self.setting)) if self.setting else None

    def cutoff(self, now: datetime) -> datetime | None:
        """Rows older than this go; None: keep them all (no pruner, or a retention of 0)."""
        if not self.pruner:
            return None
        if not self.setting:
            return now
        value = self.retention
        return now - timedelta(**{self.unit: value}) if value > 0 else None


_KINDS: dict[str, StorageKind] = {}


def register(kind: StorageKind) -> StorageKind:
    """Register (or, as a test's ready() may run twice, replace) a kind of stored thing."""
    _KINDS[kind.key] = kind
    return kind


def kinds() -> list[StorageKind]:
    return list(_KINDS.values())


def delete_in_batches(queryset, *, batch_size: int | None = None) -> int:
    """Delete the rows of `queryset` a batch at a time, each batch its own short statement (never one
    huge DELETE holding its locks for minutes), with cascades and post_delete signals (the files of
    the rows go once each batch has committed). Returns how many rows of the queryset's model went."""
    batch_size = batch_size or settings.RETENTION_BATCH_SIZE
    model = queryset.model
    label = model._meta.label
    deleted = 0
    while True:
        pks = list(queryset.order_by().values_list("pk", flat=True)[:batch_size])
        if not pks:
            return deleted
        _, per_model = model._base_manager.filter(pk__in=pks).delete()
        deleted += per_model.get(label, 0)


def orphan_files_prune(kind: StorageKind, *, now: datetime) -> int:
    """Remove the files of the kind's folder that no row refers to and are older than the grace period
    (so that a file being written before its row commits is never taken)."""
    hours = settings.RETENTION_ORPHAN_FILES_HOURS
    if not kind.directory or not kind.referenced or hours <= 0:
        return 0
    root = os.path.join(settings.MEDIA_ROOT, kind.directory)
    if not os.path.isdir(root):
        return 0
    oldest = (now - timedelta(hours=hours)).timestamp()
    candidates = []
    with os.scandir(root) as entries:
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < oldest:
                    candidates.append(f"{kind.directory}/{entry.name}")
            except FileNotFoundError:  # removed meanwhile
                continue
    if not candidates:
        return 0
    # Read after listing: a row that commits meanwhile names a file that is too new to be a candidate.
    referenced = set(import_string(kind.referenced)())
    removed = 0
    for name in candidates:
        if name in referenced:
            continue
        try:
            default_storage.delete(name)
            removed += 1
            logger.info("removed orphaned file %s (no %s row refers to it)", name, kind.key)
        except OSError:
            logger.warning("could not remove orphaned file %s", name, exc_info=True)
    return removed


def prune_all(*, now: datetime | None = None) -> dict[str, int]:
    """Run every kind's pruner with its cutoff, then remove its orphaned files: {key: rows deleted,
    "<key>_files": orphaned files removed}. One kind's failure never stops the others."""
    now = now or timezone.now()
    results: dict[str, int] = {}
    for kind in kinds():
        cutoff = kind.cutoff(now)
        if cutoff is not None:
            try:
                results[kind.key] = import_string(kind.pruner)(cutoff)
            except Exception:
                logger.exception("retention: pruning %s failed", kind.key)
        if kind.directory and kind.referenced:
            try:
                results[f"{kind.key}_files"] = orphan_files_prune(kind, now=now)
            except Exception:
                logger.exception("retention: removing orphaned %s files failed", kind.key)
    pruned = {key: n for key, n in results.items() if n}
    if pruned:
        logger.info("retention: pruned %s", pruned)
    return results


def sessions_prune(cutoff: datetime) -> int:
    """Expired sessions (what `manage.py clearsessions` removes), in batches."""
    from django.contrib.sessions.models import Session

    return delete_in_batches(Session.objects.filter(expire_date__lt=cutoff))
