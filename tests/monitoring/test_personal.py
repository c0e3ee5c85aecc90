"""The personal route, "notify me when my jobs fail": the account page and API, and the email to the
job's creator (through the first enabled global email channel) with a real SMTP server, end to end
through the session's real worker for a training job that fails for real."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.utils import timezone

from mlops_dashboard import jobs
from monitoring import services
from monitoring.models import Delivery, Notification, NotificationPreference
from tests.factories import (AnomalyDetectionFactory, DatasetFactory, NotificationChannelFactory, ProjectFactory, SilenceFactory,
                             TrainingJobFactory, UserFactory, member)
from tests.receivers import SmtpServer

pytestmark = pytest.mark.django_db


def opted_in(email="ada@example.com", **kw):
    user = UserFactory(email=email, **kw)
    NotificationPreference.objects.create(user=user, my_jobs_failed=True)
    return user


def fail_training(user, project=None):
    """A training job of `user` that failed (its row), and its alert as the app's failure raises it."""
    job = TrainingJobFactory(created_by=user, status="failed", error="The target has a single value.",
                             finished_at=timezone.now(), **({"dataset__project": project} if project else {}))
    kind = next(k for k in jobs.kinds() if k.key == "training_job")
    return services.job_failed_alert(kind, job)


def test_the_account_page_and_api_say_what_can_be_sent(client, user):
    client.force_login(user)
    assert client.get("/api/account/notifications/").json() == {"my_jobs_failed": False, "email": user.email or None,
                                                                 "channel": None}
    page = client.get("/account/notifications/").content.decode()
    assert 'id="no-channel"' in page and 'name="my_jobs_failed"' in page
    assert 'href="/account/notifications/"' in client.get("/account/tokens/").content.decode()
    user.email = ""
    user.save()
    assert 'id="no-email"' in client.get("/account/notifications/").content.decode()
    user.email = "ada@example.com"
    user.save()
    NotificationChannelFactory(name="hook")  # not an email channel
    NotificationChannelFactory(name="team-mail", url="mailto://127.0.0.1:1?to=team@example.com",
                               project=ProjectFactory(slug="alpha"))  # not global
    NotificationChannelFactory(name="z-mail", url="mailto://127.0.0.1:1?to=ops@example.com")
    NotificationChannelFactory(name="a-mail", url="mailtos://127.0.0.1:1?to=ops@example.com", enabled=False)
    response = client.put("/api/account/notifications/", {"my_jobs_failed": True}, content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {"my_jobs_failed": True, "email": "ada@example.com", "channel": "z-mail"}
    assert client.put("/api/account/notifications/", {"my_jobs_failed": "maybe"},
                      content_type="application/json").status_code == 400
    assert client.put("/api/account/notifications/", {}, content_type="application/json").status_code == 400
    assert NotificationPreference.objects.get(user=user).my_jobs_failed is True
    page = client.get("/account/notifications/").content.decode()
    assert 'id="no-channel"' not in page and 'id="no-email"' not in page and "z-mail" in page and "checked" in page
    assert client.post("/account/notifications/", {}).status_code == 302  # the box unchecked
    assert NotificationPreference.objects.get(user=user).my_jobs_failed is False
    client.logout()
    assert client.get("/api/account/notifications/").status_code in (401, 403)


def test_a_failed_job_emails_its_creator_who_asked_and_nobody_else(smtp_server, rules):
    NotificationChannelFactory(name="mail", url=smtp_server.url(to="oncall@example.com"), default_route=False)
    ada = opted_in()
    alert = fail_training(ada)
    assert alert.metadata["created_by_id"] == ada.pk
    personal = Notification.objects.get(alerts=alert, kind="personal")
    (delivery,) = services.notification_send(notification_id=personal.pk)
    assert delivery.recipient == "ada@example.com"
    services.delivery_attempt(delivery_id=delivery.pk)
    (message,) = smtp_server.wait(1)
    assert message.envelope_to == ["ada@example.com"]
    assert message["Subject"].startswith("[HIGH] Failed: Training job #") and len(message["Subject"]) <= 78
    text = SmtpServer.text(message)
    assert "A job you started failed" in text and "single value" in text
    assert f"/monitoring/alerts/{alert.pk}/" in text and "/account/notifications/" in text
    # An anomaly detection that failed: the same.
    detection = AnomalyDetectionFactory(created_by=ada, status="failed", error="No numeric column.",
                                        finished_at=timezone.now())
    detection_alert = services.job_failed_alert(next(k for k in jobs.kinds() if k.key == "anomaly_detection"), detection)
    assert detection_alert.title == f"Failed: Anomaly detection #{detection.pk} ({detection.dataset_name})"
    assert Notification.objects.filter(alerts=detection_alert, kind="personal").exists()
    # Not opted in, no email, or another person's job: nothing personal.
    assert not Notification.objects.filter(alerts=fail_training(UserFactory(email="bob@example.com")),
                                           kind="personal").exists()
    assert not Notification.objects.filter(alerts=fail_training(opted_in(email="")), kind="personal").exists()
    assert not Notification.objects.filter(alerts=fail_training(None), kind="personal").exists()


def test_a_silence_holds_the_personal_notice_back_too(smtp_server, rules):
    NotificationChannelFactory(name="mail", url=smtp_server.url(to="oncall@example.com"))
    ada = opted_in()
    silence = SilenceFactory(matchers={"rule": "training-failed"})
    alert = fail_training(ada)
    assert alert.is_silenced and not Notification.objects.filter(alerts=alert).exists()
    silence.ends_at = timezone.now()
    silence.save()
    # Silenced after the notice was queued: the send finds it silenced.
    alert = fail_training(ada)
    personal = Notification.objects.get(alerts=alert, kind="personal")
    SilenceFactory(matchers={"subject": alert.subject})
    assert services.notification_send(notification_id=personal.pk) == []
    personal.refresh_from_db()
    assert personal.status == Notification.Status.SILENCED
    assert smtp_server.settle(0.5) == []


def test_no_global_email_channel_means_the_notice_is_skipped(rules):
    ada = opted_in()
    alert = fail_training(ada)
    personal = Notification.objects.get(alerts=alert, kind="personal")
    assert services.notification_send(notification_id=personal.pk) == []
    personal.refresh_from_db()
    assert personal.status == Notification.Status.SKIPPED and not Delivery.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_training_job_that_fails_for_real_emails_oncall_and_its_creator(worker, smtp_server, tmp_path):
    from monitoring.models import AlertRule
    from training import services as training

    services.alert_rules_install_defaults()
    NotificationChannelFactory(name="mail", url=smtp_server.url(to="oncall@example.com"))
    ada = opted_in()
    project = member(ada, "editor", ProjectFactory(slug="alpha"))
    path = tmp_path / "constant.csv"
    path.write_text("x,y\n" + "".join(f"{i},1\n" for i in range(30)))
    dataset = DatasetFactory(csv=str(path), name="constant", project=project, created_by=ada)
    job = training.training_job_start(user=ada, dataset=dataset, target_column="y", algorithm="sgd", epochs=4)
    got = smtp_server.wait(2, timeout=120)
    by_to = {tuple(m.envelope_to): m for m in got}
    assert set(by_to) == {("oncall@example.com",), ("ada@example.com",)}
    for message in got:
        assert message["Subject"].startswith(f"[HIGH] Failed: Training job #{job.pk} (")
        assert len(message["Subject"]) <= 78
    from monitoring.models import Alert

    alert = Alert.objects.get(subject=f"training_job.{job.pk}")
    assert alert.rule.kind == AlertRule.Kind.TRAINING_FAILED and alert.metadata["created_by_id"] == ada.pk
    link = f"{settings.SITE_URL.rstrip('/')}/monitoring/alerts/{alert.pk}/"
    for message in got:
        text = SmtpServer.text(message)
        assert link in text and "INVALID_TARGET" in text and "single value" in text
    assert "A job you started failed" in SmtpServer.text(by_to[("ada@example.com",)])
    assert "A job you started failed" not in SmtpServer.text(by_to[("oncall@example.com",)])
    assert len(smtp_server.settle(settings.NOTIFY_GROUP_SECONDS + 2)) == 2
    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
