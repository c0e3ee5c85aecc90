import os

# Arrow's allocator (its own jemalloc) in every process of the project. jemalloc reads this once,
# when pyarrow is first imported, so it is set here, before anything imports pyarrow; an operator's
# own JE_ARROW_MALLOC_CONF wins. Freed pages go back to the OS about 10 ms after their last use,
# and at once when they do (muzzy_decay_ms:0): jemalloc's default first hands them back lazily
# (MADV_FREE), and such pages stay in the process's memory until the kernel runs short. Measured by
# bench/profile_dataset.py: profiling's peak memory 12-14 MiB lower (of about 105), no slower.
ARROW_JEMALLOC_CONF = "dirty_decay_ms:10,muzzy_decay_ms:0"
os.environ.setdefault("JE_ARROW_MALLOC_CONF", ARROW_JEMALLOC_CONF)

# Load the Celery app with Django, so that @shared_task and transaction.on_commit enqueueing use it.
from .celery import app as celery_app

__all__ = ["celery_app"]
