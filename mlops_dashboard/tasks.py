from celery import shared_task

from .events import publish
from .events.catalog import ActivityUpdate


def test_activity(username: str, via: str) -> ActivityUpdate:
    return ActivityUpdate(
        activity={
            "id": None,
            "title": "Test event",
            "description": f"Published by {username} from {via}.",
            "user": username,
            "action_type": "test",
            "status": "info",
            "severity_level": "info",
            "duration": None,
            "metadata": {"via": via},
        }
    )


@shared_task(name="mlops_dashboard.publish_test_event")
def publish_test_event(username: str) -> int | None:
    """Publish a test event from inside a worker: proves worker → Redis → socket end to end."""
    return publish(test_activity(username, "a Celery worker"))


@shared_task(name="mlops_dashboard.jobs_recover", ignore_result=True)
def jobs_recover() -> dict:
    """Fail every job, run or dataset whose worker stopped sending heartbeats, and send again the
    queued ones whose broker message was lost (run by beat)."""
    from .jobs import reap_all, resend_lost

    return {**reap_all(), **resend_lost()}


@shared_task(name="mlops_dashboard.retention_prune", ignore_result=True)
def retention_prune() -> dict:
    """Delete what is past its retention and the files no row refers to (run by beat, hourly)."""
    from .retention import prune_all

    return prune_all()


@shared_task(name="mlops_dashboard.api_tokens_prune_expired", ignore_result=True)
def api_tokens_prune_expired() -> int:
    """Delete expired API tokens (run by beat)."""
    from .tokens import api_tokens_prune_expired as prune

    return prune()
