"""What monitoring's events carry and its API answers, built from its rows (the services publish
them, the selectors and the API read them)."""

from __future__ import annotations

from .models import Alert, MetricSample


def system_metrics_payload(sample: MetricSample, *, health: str) -> dict:
    """A host's figures only: nothing of any project (its model figures go out as project_metrics)."""
    return {
        "host": sample.host,
        "cpu_percent": float(sample.cpu_percent),
        "memory_percent": float(sample.memory_percent),
        "disk_percent": float(sample.disk_percent),
        "active_connections": int(sample.active_connections),
        "current_health": health,
        "api_response_time_ms": sample.api_response_time_ms,
        "ws_response_time_ms": sample.ws_response_time_ms,
        "load_average": sample.load_1,
        "network_io": {"sent_rate": sample.net_sent_rate, "recv_rate": sample.net_recv_rate,
                       "bytes_sent": sample.net_bytes_sent, "bytes_recv": sample.net_bytes_recv},
        "role": sample.role or None,
    }


def chart_point(sample: MetricSample) -> dict:
    t = int(sample.timestamp.timestamp() * 1000)
    return {
        "resource": {"host": sample.host, "t": t, "cpu": sample.cpu_percent, "memory": sample.memory_percent,
                     "disk": sample.disk_percent, "load": sample.load_1},
        "network": {"host": sample.host, "t": t, "sent_rate": sample.net_sent_rate, "recv_rate": sample.net_recv_rate},
        "performance": {"host": sample.host, "t": t, "api_ms": sample.api_response_time_ms,
                        "ws_ms": sample.ws_response_time_ms, "active_connections": sample.active_connections},
    }


def alert_payload(alert: Alert) -> dict:
    """What `system_alert` carries and the API answers."""
    return {
        "id": alert.pk,
        "title": alert.title,
        "message": alert.message,
        "alert_type": alert.alert_type,
        "priority": alert.priority,
        "source": alert.source,
        "status": alert.status,
        "actions": alert.actions,
        "subject": alert.subject,
        "rule": alert.rule_key,
        "value": alert.value,
        "occurrences": alert.occurrences,
        "suggested_actions": alert.suggested_actions,
        "created_at": alert.created_at.isoformat() if alert.created_at else None,
        "last_seen_at": alert.last_seen_at.isoformat() if alert.last_seen_at else None,
        "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by_id else None,
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "resolved_by": alert.resolved_by.get_username() if alert.resolved_by_id else None,
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "auto_resolved": alert.auto_resolved,
        "resolution_note": alert.resolution_note,
        "project_id": alert.project_id,
        "silenced": alert.is_silenced,
        "silenced_until": alert.silenced_until.isoformat() if alert.is_silenced else None,
        "silence_id": alert.silence_id if alert.is_silenced else None,
        "last_notified_at": alert.last_notified_at.isoformat() if alert.last_notified_at else None,
    }
