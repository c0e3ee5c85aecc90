"""Every write of the monitoring app, and the events that announce them, one module per section:
health (metric samples and health) · alerts (alert rules and alerts) · notifications (from alerts to
channels: grouping, deliveries, repeats) · channels · silences · messages · anomalies · detection
(on-demand anomaly detection) · watch (service and job checks) · rollup (rollup and retention).

Events go out on commit of the write they describe (publish_on_commit). Callers use this package
(`from monitoring import services; services.alert_raise(...)`): it re-exports the public names.
"""

from ..payloads import alert_payload, chart_point, system_metrics_payload  # noqa: F401
from .health import (  # noqa: F401
    HEALTH_COMPONENTS,
    SAMPLE_FIELDS,
    health_evaluate_host,
    health_update,
    metric_sample_record,
    metrics_collect,
    project_metrics_publish,
    serving_figures,
)
from .alerts import (  # noqa: F401
    Conflict,
    MAX_RULE_CHANNELS,
    RULE_FIELDS,
    alert_acknowledge,
    alert_condition_clear,
    alert_raise,
    alert_resolve,
    alert_rule_create,
    alert_rule_delete,
    alert_rule_set_enabled,
    alert_rule_update,
    alert_rules_check_metrics,
    alert_rules_check_project,
    alert_rules_check_system,
    alert_rules_install_defaults,
)
from .anomalies import (  # noqa: F401
    anomalies_check_project,
    anomalies_check_sample,
    anomaly_record,
    metric_specs,
)
from .detection import (  # noqa: F401
    DetectionConflict,
    anomaly_detection_cancel,
    anomaly_detection_delete,
    anomaly_detection_run,
    anomaly_detection_scores,
    anomaly_detection_start,
    anomaly_detections_reap_stale,
)
from .range_detection import telemetry_detection_start  # noqa: F401
from .watch import (  # noqa: F401
    job_failed_alert,
    jobs_check,
    monitoring_check,
    services_check,
    workers_check,
)
from .notifications import (  # noqa: F401
    alert_deliveries,
    channels_for,
    delivery_attempt,
    delivery_enqueue,
    notification_send,
    notifications_sweep,
)
from .personal import alert_personal, personal_channel, preference_get, preference_set  # noqa: F401
from .silences import (  # noqa: F401
    SILENCE_MAX_DAYS,
    SNOOZE_MAX_MINUTES,
    alert_snooze,
    maintenance_window_create,
    maintenance_window_delete,
    maintenance_window_update,
    silence_create,
    silence_expire,
    silence_for,
    silences_visible,
)
from .silences import Conflict as SilenceConflict  # noqa: F401
from .rollup import (  # noqa: F401
    AVERAGED,
    metrics_rollup,
)
from .telemetry_anomalies import (  # noqa: F401
    anomaly_spec_validate,
    telemetry_points_score,
    telemetry_silent_check,
)
