"""How long retention's batched deletes hold a table: insert N old activity rows (default 200,000)
into the database of DATABASE_URL (migrated; use a scratch one), prune them, and print the rows per
second and the longest single batch (a DELETE statement and its transaction).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/scratch .venv/bin/python bench/retention_prune.py 200000
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops_dashboard.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from mlops_dashboard import retention  # noqa: E402
from mlops_dashboard.models import Activity  # noqa: E402


def main(n: int) -> None:
    old = timezone.now() - timedelta(days=settings.RETENTION_ACTIVITY_DAYS + 1)
    Activity.objects.bulk_create([Activity(title=f"row {i}", action_type="bench") for i in range(n)], batch_size=5000)
    Activity.objects.filter(action_type="bench").update(created_at=old)
    batches = []
    real = Activity.objects.model._base_manager.filter

    def timed_filter(*args, **kwargs):  # time each batch's DELETE as delete_in_batches issues it
        queryset = real(*args, **kwargs)
        delete = queryset.delete

        def timed_delete():
            began = time.perf_counter()
            result = delete()
            batches.append(time.perf_counter() - began)
            return result

        queryset.delete = timed_delete
        return queryset

    Activity._base_manager.filter = timed_filter
    began = time.perf_counter()
    rows = Activity.objects.filter(action_type="bench", created_at__lt=old + timedelta(seconds=1))
    deleted = retention.delete_in_batches(rows)
    elapsed = time.perf_counter() - began
    print(f"{connection.vendor}: {deleted:,} rows in {elapsed:.1f} s ({deleted / elapsed:,.0f} rows/s), "
          f"{len(batches)} batches of {settings.RETENTION_BATCH_SIZE}: longest {max(batches) * 1000:.0f} ms, "
          f"median {statistics.median(batches) * 1000:.0f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
