"""The live connection as a user sees it: a real Chromium on the real server, events through Redis."""

import json
import re

import pytest
from playwright.sync_api import expect

from mlops_dashboard.events import catalog, publish
from tests import procs
from tests.browser.conftest import FAST_RECONNECT

pytestmark = pytest.mark.browser


def default_project_id() -> int:
    """The project of the `user` fixture (alice): her sockets follow its topic."""
    from tests.factories import ProjectFactory

    return ProjectFactory().id


def activity_event(title: str, project_id: int | None = None, **extra) -> catalog.ActivityUpdate:
    """An `activity_update` of type test, of the default project (or `project_id`): it shows as an
    info toast with its title."""
    return catalog.ActivityUpdate(
        project_id=project_id or default_project_id(),
        activity={
            "id": None,
            "title": title,
            "description": f"{title}: sent by the browser tests.",
            "user": "tests",
            "action_type": "test",
            "status": "info",
            "severity_level": "info",
            "duration": None,
            "metadata": extra,
        }
    )


SET_VISIBILITY = """state => {
    Object.defineProperty(document, "visibilityState", {configurable: true, get: () => state});
    Object.defineProperty(document, "hidden", {configurable: true, get: () => state === "hidden"});
    document.dispatchEvent(new Event("visibilitychange"));
}"""


def indicator(page):
    return page.locator("#connection .label")


def log_rows(page, event_id=None):
    if event_id is None:
        return page.locator("#event-log tr")
    return page.locator(f'#event-log tr[data-event-id="{event_id}"]')


def toasts(page, text=None):
    locator = page.locator("#toasts .toast")
    return locator.filter(has_text=text) if text else locator


# --- 1. logging in, and the indicator ------------------------------------------------------------------


def test_anonymous_visit_redirects_to_login_and_the_form_logs_in(server, open_page, user):
    page = open_page(server, path="/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.locator("#connection")).to_have_count(0)  # no live connection for anonymous visitors

    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("enter a correct username and password")

    page.get_by_label("Password").fill("alice-pass-123")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(server.url + "/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(indicator(page)).to_have_text("Live")
    expect(page.locator("#connection .latency")).to_have_text(re.compile(r"^\d+ ms · (excellent|good|fair|poor)$"))
    expect(page.get_by_role("navigation").get_by_role("link", name="Dashboard")).to_have_attribute("aria-current", "page")
    assert not page.console_errors


def test_every_logged_in_page_is_live_and_logout_is_a_post(server, open_page, user):
    page = open_page(server, user)
    for path, heading in [("/datasets/", "datasets"), ("/live/", "Live events"), ("/", "Dashboard")]:
        page.goto(path)
        expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(heading, re.I))
        expect(indicator(page)).to_have_text("Live")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login/"))
    page.goto("/live/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/live/"))
    assert not page.console_errors


# --- 2. events reach the page --------------------------------------------------------------------------


def test_a_published_event_appears_in_the_log_and_as_a_toast(server, open_page, user):
    page = open_page(server, user, path="/live/")
    expect(indicator(page)).to_have_text("Live")
    expect(page.get_by_text("Waiting for events…")).to_be_visible()
    assert page.get_by_role("button", name="Publish test event").count() == 0  # staff only

    event_id = publish(activity_event("Nightly retrain kicked off"))

    row = log_rows(page, event_id)
    expect(row).to_have_count(1)
    expect(row.locator(".log__type")).to_have_text("activity_update")
    expect(row.locator(".log__id")).to_have_text(str(event_id))
    expect(row.locator("summary")).to_contain_text('"title":"Nightly retrain kicked off"')
    expect(toasts(page, "Nightly retrain kicked off")).to_be_visible()
    expect(page.locator("#diag-last-id")).to_have_text(str(event_id))
    expect(page.locator("#log-count")).to_have_text("1 event")

    # The compact payload expands to the whole event.
    row.locator("summary").click()
    expect(row.locator("pre")).to_contain_text(f'"id": {event_id}')

    # Events are newest first, and the type filter lists the types seen.
    second = publish(catalog.DatasetCreated(project_id=default_project_id(), dataset_id=5, name="churn.csv"))
    expect(log_rows(page).first).to_have_attribute("data-event-id", str(second))
    page.locator("#event-type-filter").select_option("dataset_created")
    expect(log_rows(page, event_id)).to_be_hidden()
    expect(log_rows(page, second)).to_be_visible()
    expect(page.locator("#log-count")).to_have_text("1 of 2 events")
    page.locator("#event-type-filter").select_option("")
    expect(log_rows(page, event_id)).to_be_visible()
    assert not page.console_errors


def test_staff_publish_test_event_button_round_trips(server, open_page, staff_user):
    page = open_page(server, staff_user, path="/live/")
    expect(indicator(page)).to_have_text("Live")

    with page.expect_response("**/api/events/test/") as response_info:
        page.get_by_role("button", name="Publish test event").click()
    response = response_info.value
    assert response.status == 201
    event_id = response.json()["id"]

    expect(log_rows(page, event_id)).to_have_count(1)
    expect(log_rows(page, event_id).locator("summary")).to_contain_text("Published by root")
    expect(toasts(page, "Test event")).to_contain_text("Published by root from the Live events page.")
    expect(page.locator("#publish-status")).to_have_text(re.compile(r"^Delivered in \d+ ms$"))
    assert not page.console_errors


def test_events_published_between_render_and_connect_are_replayed(server, open_page, user):
    """The socket resumes from the id the page was rendered with, so nothing in between is lost."""
    page = open_page(server, user)
    ids = publish_before_connecting(page, lambda: [activity_event(f"early {n}") for n in range(3)])
    page.goto("/live/")
    expect(indicator(page)).to_have_text("Live")
    assert len(ids) == 3
    for event_id in ids:
        expect(log_rows(page, event_id)).to_have_count(1)
    expect(page.locator("#diag-duplicates")).to_have_text("0 duplicates")


def publish_before_connecting(page, events):
    """Route the page's first socket through a handler that publishes `events()` before it connects."""
    published = []

    def handler(ws):
        if not published:
            published.extend(publish(e) for e in events())
        ws.connect_to_server()

    page.route_web_socket(re.compile(r"/ws/"), handler)
    return published


def test_a_replay_gap_warns_and_reloads_the_page(server, open_page, user, settings):
    settings.EVENT_LOG_SIZE = 3  # publishes from this process trim the log to 3 events
    page = open_page(server, user)
    lost = publish_before_connecting(page, lambda: [activity_event(f"lost {n}") for n in range(6)])
    page.goto("/")
    with page.expect_event("load", timeout=60_000):
        expect(toasts(page, "Missed updates — refreshing")).to_be_visible()
    assert len(lost) == 6
    expect(indicator(page)).to_have_text("Live")
    expect(toasts(page, "Missed updates")).to_have_count(0)


def test_on_the_live_page_a_replay_gap_is_logged_without_a_reload(server, open_page, user, settings):
    settings.EVENT_LOG_SIZE = 3
    page = open_page(server, user)
    lost = publish_before_connecting(page, lambda: [activity_event(f"lost {n}") for n in range(6)])
    page.goto("/live/")
    page.evaluate("window.__notReloaded = true")
    expect(toasts(page, "Missed updates — refreshing")).to_be_visible()
    expect(page.locator('#event-log tr[data-type="resync"]')).to_have_count(1)
    expect(page.locator('#event-log tr[data-type="error"]')).to_contain_text("replay_gap")
    expect(page.locator("#diag-last-id")).to_have_text(str(lost[-1]))  # resumes at the stream's head
    later = publish(activity_event("after the gap"))
    expect(log_rows(page, later)).to_have_count(1)
    page.wait_for_timeout(2000)
    assert page.evaluate("window.__notReloaded") is True


def test_the_log_keeps_the_newest_500_events(server, open_page, user):
    page = open_page(server, user, path="/live/")
    expect(indicator(page)).to_have_text("Live")
    project_id = default_project_id()
    ids = [publish(catalog.DatasetCreated(project_id=project_id, dataset_id=n, name=f"d{n}")) for n in range(1, 511)]
    expect(page.locator("#diag-received")).to_have_text("510", timeout=60_000)
    expect(log_rows(page)).to_have_count(500)
    expect(log_rows(page).first).to_have_attribute("data-event-id", str(ids[-1]))
    expect(log_rows(page).last).to_have_attribute("data-event-id", str(ids[10]))
    expect(page.locator("#log-count")).to_have_text("500 events (latest)")


def test_subscriptions_are_sent_again_after_each_reconnect(server, open_page, user):
    page = open_page(server, user, overrides={"hiddenCloseMs": 100})
    sent = []

    def record(ws):
        upstream = ws.connect_to_server()

        def forward(message):
            sent.append(json.loads(message))
            upstream.send(message)

        ws.on_message(forward)

    page.route_web_socket(re.compile(r"/ws/"), record)
    page.goto("/")
    expect(indicator(page)).to_have_text("Live")
    # What a page that follows one training job does.
    page.evaluate("async () => (await import('/static/js/realtime.js')).realtime.subscribe(['training_job.5'])")
    page.evaluate(SET_VISIBILITY, "hidden")
    expect(indicator(page)).to_have_text("Offline")
    page.evaluate(SET_VISIBILITY, "visible")
    expect(indicator(page)).to_have_text("Live")
    # The route handler records only while Playwright is waiting: wait through it for the resend.
    procs.wait_for(lambda: page.wait_for_timeout(100) or sum(m["type"] == "subscribe" for m in sent) >= 2,
                   timeout=60, message="the subscription sent again")
    subscribes = [m for m in sent if m["type"] == "subscribe"]
    assert subscribes == [{"type": "subscribe", "topics": ["training_job.5"]}] * 2
    pings = [m for m in sent if m["type"] == "ping"]
    assert len(pings) >= 2 and all(isinstance(m["ts"], int) for m in pings)


# --- 3. losing the server and getting it back -----------------------------------------------------------


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_server_restart_reconnects_and_replays_what_was_missed_exactly_once(own_server, open_page, user, how):
    page = open_page(own_server, user, overrides=FAST_RECONNECT, path="/live/")
    expect(indicator(page)).to_have_text("Live")
    before = publish(activity_event("before the restart"))
    expect(log_rows(page, before)).to_have_count(1)

    own_server.stop() if how == "stopped" else own_server.kill()  # SIGTERM, or SIGKILL as a crash
    expect(indicator(page)).to_have_text("Reconnecting")
    expect(page.locator("#offline-banner")).to_be_visible()
    expect(page.locator("#offline-banner")).to_contain_text("Offline mode")

    missed = [publish(activity_event(f"while down {n}")) for n in range(5)]
    own_server.start()

    expect(indicator(page)).to_have_text("Live", timeout=60_000)
    expect(page.locator("#offline-banner")).to_be_hidden()
    for event_id in [before, *missed]:
        expect(log_rows(page, event_id)).to_have_count(1)
    after = publish(activity_event("after the restart"))
    expect(log_rows(page, after)).to_have_count(1)

    ids = [int(i) for i in log_rows(page).evaluate_all("rows => rows.map(r => r.dataset.eventId)")]
    assert ids == sorted(set(ids), reverse=True) == [after, *reversed(missed), before]
    expect(page.locator("#diag-reconnects")).to_have_text("1 reconnect since page load")


def test_after_max_attempts_the_indicator_offers_retry(own_server, open_page, user):
    overrides = {"backoffBaseMs": 100, "backoffMaxMs": 200, "maxReconnectAttempts": 2}
    page = open_page(own_server, user, overrides=overrides, path="/")
    expect(indicator(page)).to_have_text("Live")
    own_server.stop()
    expect(indicator(page)).to_have_text("Offline")
    retry = page.locator("#connection").get_by_role("button", name="Retry")
    expect(retry).to_be_visible()
    expect(page.locator("#offline-banner")).to_contain_text("Offline mode")

    own_server.start()
    retry.click()
    expect(indicator(page)).to_have_text("Live")
    expect(retry).to_be_hidden()


def test_with_the_socket_blocked_events_arrive_by_polling_in_offline_mode(server, open_page, user):
    overrides = {**FAST_RECONNECT, "backoffBaseMs": 500, "pollIntervalMs": 700}
    page = open_page(server, user, overrides=overrides)
    page.route_web_socket(re.compile(r"/ws/"), lambda ws: ws.close(code=4000, reason="blocked by a proxy"))
    page.goto("/live/")
    expect(indicator(page)).to_have_text("Reconnecting")
    banner = page.locator("#offline-banner")
    expect(banner).to_contain_text("Offline mode")

    ids = [publish(activity_event(f"polled {n}")) for n in range(3)]
    for event_id in ids:
        expect(log_rows(page, event_id)).to_have_count(1)
        expect(log_rows(page, event_id).locator(".tag")).to_have_text("polled")
    expect(banner.locator("[data-last-refresh]")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    page.wait_for_timeout(1500)  # more polls: still once each
    for event_id in ids:
        expect(log_rows(page, event_id)).to_have_count(1)




def test_polling_brings_only_the_users_projects_events(server, open_page):
    """The offline fallback reads the events API: a member of project A polls A's events and never
    B's, which B's member (an API client here) demonstrably gets."""
    from django.test import Client

    from tests.factories import ProjectFactory, UserFactory, member

    a, b = ProjectFactory(slug="team-a"), ProjectFactory(slug="team-b")
    ann, ben = UserFactory(username="ann"), UserFactory(username="ben")
    member(ann, "viewer", a)
    member(ben, "viewer", b)
    page = open_page(server, ann, overrides={**FAST_RECONNECT, "backoffBaseMs": 500, "pollIntervalMs": 700})
    page.route_web_socket(re.compile(r"/ws/"), lambda ws: ws.close(code=4000, reason="blocked by a proxy"))
    page.goto("/live/")
    expect(page.locator("#offline-banner")).to_contain_text("Offline mode")
    theirs = [publish(activity_event(f"b {n}", project_id=b.id)) for n in range(3)]
    mine = [publish(activity_event(f"a {n}", project_id=a.id)) for n in range(3)]
    for event_id in mine:
        expect(log_rows(page, event_id)).to_have_count(1)
    page.wait_for_timeout(1500)  # more polls
    for event_id in theirs:
        expect(log_rows(page, event_id)).to_have_count(0)
    api = Client()
    api.force_login(ben)
    got = {e["id"] for e in api.get(f"/api/events/?after={theirs[0] - 1}&limit=1000").json()["events"]}
    assert set(theirs) <= got and not got & set(mine)


def test_a_hidden_tab_closes_its_socket_and_catches_up_when_shown(server, open_page, user):
    page = open_page(server, user, overrides={"hiddenCloseMs": 500}, path="/live/")
    expect(indicator(page)).to_have_text("Live")
    page.evaluate(SET_VISIBILITY, "hidden")
    expect(indicator(page)).to_have_text("Offline")
    expect(page.locator("#diag-state .badge")).to_have_text("Disconnected")
    missed = [publish(activity_event(f"while hidden {n}")) for n in range(3)]
    page.wait_for_timeout(300)
    expect(log_rows(page)).to_have_count(0)  # nothing arrives while hidden

    page.evaluate(SET_VISIBILITY, "visible")
    expect(indicator(page)).to_have_text("Live")
    for event_id in missed:
        expect(log_rows(page, event_id)).to_have_count(1)


def test_a_socket_that_is_no_longer_logged_in_goes_to_the_login_page(server, open_page, user):
    page = open_page(server, user, overrides={"hiddenCloseMs": 200}, path="/live/?type=x")
    expect(indicator(page)).to_have_text("Live")
    page.context.clear_cookies()  # the session is gone (logged out in another tab, expired)
    page.evaluate(SET_VISIBILITY, "hidden")
    expect(indicator(page)).to_have_text("Offline")
    page.evaluate(SET_VISIBILITY, "visible")  # reconnects: the server answers "unauthorized"
    expect(page).to_have_url(re.compile(r"/login/\?next=/live/%3Ftype%3Dx$"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_backoff_doubles_from_1_s_to_a_30_s_cap_with_jitter_and_latency_grades(server, open_page, user):
    page = open_page(server, user, path="/")
    got = page.evaluate(
        """async () => {
            const m = await import('/static/js/realtime.js');
            const attempts = [1, 2, 3, 4, 5, 6, 10];
            return {
                middle: attempts.map(a => m.backoffDelay(a, 1000, 30000, () => 0.5)),
                low: attempts.map(a => m.backoffDelay(a, 1000, 30000, () => 0)),
                high: attempts.map(a => m.backoffDelay(a, 1000, 30000, () => 0.999)),
                quality: [0, 49, 50, 149, 150, 299, 300, 2000].map(m.qualityFor),
                defaults: [m.realtime.options.maxReconnectAttempts, m.realtime.options.pingIntervalMs,
                           m.realtime.options.pollIntervalMs, m.realtime.options.hiddenCloseMs],
            };
        }"""
    )
    assert got["middle"] == [1000, 2000, 4000, 8000, 16000, 30000, 30000]
    assert got["low"] == [750, 1500, 3000, 6000, 12000, 22500, 22500]
    assert got["high"][0] == 1250 and max(got["high"]) == 30000
    assert got["quality"] == ["excellent", "excellent", "good", "good", "fair", "fair", "poor", "poor"]
    assert got["defaults"] == [10, 15000, 30000, 60000]


# --- 4. toasts ------------------------------------------------------------------------------------------


def test_info_toasts_leave_after_5_s_and_errors_stay_until_closed(server, open_page, user):
    page = open_page(server, user, path="/")
    expect(indicator(page)).to_have_text("Live")
    # How long each toast stayed, by the page's own clock (however long this process takes to look).
    page.evaluate("""() => {
        window.__toastLives = [];
        new MutationObserver(records => records.forEach(r => {
            r.addedNodes.forEach(n => { n.__shownAt = performance.now(); });
            r.removedNodes.forEach(n => window.__toastLives.push(
                {text: n.textContent, ms: performance.now() - n.__shownAt}));
        })).observe(document.getElementById("toasts"), {childList: true});
    }""")

    publish(activity_event("A passing note"))
    publish(
        catalog.TrainingFailed(project_id=default_project_id(), job_id=9, error="Target column 'churn' is missing.",
                               error_code="INVALID_TARGET", stage_failed="data_preparation",
                               progress_when_failed=4.0, suggestions=[])
    )
    info = toasts(page, "A passing note")
    error = toasts(page, "Training failed")
    expect(info).to_be_visible()
    expect(info).to_have_attribute("data-kind", "info")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("data-kind", "error")
    expect(error).to_have_attribute("role", "alert")

    expect(info).to_have_count(0, timeout=60_000)
    lives = [t["ms"] for t in page.evaluate("window.__toastLives") if "A passing note" in t["text"]]
    assert len(lives) == 1 and lives[0] >= 5000  # not before 5 s

    page.wait_for_timeout(1500)
    expect(error).to_be_visible()  # errors stay
    expect(error).to_contain_text("Target column 'churn' is missing.")
    error.get_by_role("button", name="Dismiss notification").click()
    expect(error).to_have_count(0)


def test_event_to_toast_mapping(server, open_page, user):
    page = open_page(server, user, path="/")
    expect(indicator(page)).to_have_text("Live")
    alert = {"id": 1, "title": "Disk almost full", "message": "worker-1 /data at 97%", "alert_type": "resource",
             "source": "worker-1", "actions": []}
    publish(catalog.SystemAlert(alert={**alert, "priority": "critical", "status": "open"}))
    publish(catalog.SystemAlert(alert={**alert, "title": "Resolved one", "priority": "high", "status": "resolved"}))
    publish(catalog.PipelineCompleted(project_id=default_project_id(), pipeline_id=1, run_id=3, status="cancelled",
                                      message="Run 3 was cancelled.", duration=4.0))
    publish(catalog.HealthChange(current_health="warning", previous_health="healthy", reason="CPU above 90%",
                                 metrics={}, recommended_action="Add a worker"))
    publish(catalog.DatasetCreated(project_id=default_project_id(), dataset_id=4, name="quiet.csv"))  # no toast
    publish(catalog.ModelDeployed(project_id=default_project_id(), model_id=2, model_name="churn", model_version=3,
                                  model_accuracy=0.9, deployment_timestamp="2026-01-01T00:00:00Z",
                                  message="churn v3 is serving."))

    expect(toasts(page, "Disk almost full")).to_have_attribute("data-kind", "error")
    expect(toasts(page, "Pipeline cancelled")).to_have_attribute("data-kind", "warning")
    expect(toasts(page, "System health: warning")).to_have_attribute("data-kind", "warning")
    expect(toasts(page, "Model deployed")).to_have_attribute("data-kind", "success")
    expect(toasts(page)).to_have_count(4)
    expect(toasts(page, "Resolved one")).to_have_count(0)

    # At most five at once: the oldest transient ones make room.
    for n in range(6):
        publish(activity_event(f"burst {n}"))
    expect(toasts(page, "burst 5")).to_be_visible()
    expect(toasts(page)).to_have_count(5)
    expect(toasts(page, "Disk almost full")).to_be_visible()  # the critical alert stays
