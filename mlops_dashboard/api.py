"""API of the core: the event log (polling fallback), a staff test event, and the activity feed."""

import json
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, permissions, serializers, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from .activity import activity_payload
from .events import bus, publish
from .events import topics as topic_rules
from .filters import MAX_ID, ProjectFilters, ProjectScopedMixin, QuerySerializer
from .models import Activity
from .tasks import publish_test_event, test_activity
from .tokens import TokenScopePermission


class EventsQuery(QuerySerializer):
    after = serializers.IntegerField(min_value=0, max_value=MAX_ID, default=0, help_text="Return events with a larger id.")
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=100, help_text="At most this many events.")
    # ASCII names only, and short enough for any server's request line (uvicorn's is 16 KiB).
    topics = serializers.RegexField(
        r"^[a-z_]{1,40}\.[0-9]{1,18}(,[a-z_]{1,40}\.[0-9]{1,18})*$", required=False, max_length=4000,
        help_text="Object topics to follow as well, comma-separated (e.g. training_job.12,dataset.3), as a "
                  "socket subscribes to them; those you may not view (or that do not exist) are left out and "
                  "listed in `refused_topics`.",
    )

    def validate_topics(self, value):
        names = list(dict.fromkeys(t.strip() for t in value.split(",") if t.strip()))
        if len(names) > settings.WS_MAX_SUBSCRIPTIONS:
            raise serializers.ValidationError(f"At most {settings.WS_MAX_SUBSCRIPTIONS} topics.")
        unknown = [t for t in names if topic_rules.object_topic(t) is None]
        if unknown:
            raise serializers.ValidationError(
                f"Not an object topic: {unknown[0][:60]!r} (e.g. training_job.12; your projects' topics come "
                "without asking)."
            )
        return names


class EventLogView(APIView):
    """Logged events after an id, oldest first: the polling fallback and a way to catch up.

    Only what a socket of yours would receive now: `dashboard`, your own `user.<id>`, your projects'
    `project.<id>` (staff: every project, and `staff`), and the object topics named in `topics`
    that you may view. `gap` is true when events after `after` are no longer in the log: reload state from the API.
    A page holds at most `limit` events and at most EVENTS_PAGE_MAX_BYTES (1 MB) of their JSON.
    Page on with `after=next_after` while `has_more` is true.
    """

    @extend_schema(
        parameters=[EventsQuery],
        responses=inline_serializer(
            "EventLogPage",
            {
                "events": serializers.ListField(child=serializers.DictField()),
                "latest_id": serializers.IntegerField(),
                "next_after": serializers.IntegerField(),
                "has_more": serializers.BooleanField(),
                "gap": serializers.BooleanField(),
                "refused_topics": serializers.ListField(child=serializers.CharField()),
            },
        ),
    )
    def get(self, request):
        query = EventsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        after, limit = query.validated_data["after"], query.validated_data["limit"]
        wanted = query.validated_data.get("topics", [])
        granted = topic_rules.granted_topics(request.user, wanted)
        # Refused, not an error: a poll must go on when a topic's project was left meanwhile. As with
        # the socket's forbidden_topic, an object that does not exist is refused the same way.
        refused = [t for t in wanted if t not in granted]
        page = events_page(topic_rules.view_of(request.user), after, limit, granted=frozenset(granted))
        return Response(
            {
                "events": page.events,
                "latest_id": page.latest_id,
                "next_after": page.next_after,
                "has_more": page.has_more,
                "gap": page.gap,
                "refused_topics": refused,
            }
        )


@dataclass
class EventsPage:
    events: list[dict]
    latest_id: int
    next_after: int
    has_more: bool
    gap: bool


# Events are read from the log in batches, so a page never pulls more than about a batch past its budget.
_READ_BATCH = 100


def events_page(view: topic_rules.View, after: int, limit: int, *, granted: frozenset = frozenset()) -> EventsPage:
    """At most `limit` logged events after `after`, and at most EVENTS_PAGE_MAX_BYTES of them (at
    least one), of those `view` sees (plus the object topics in `granted`): `has_more` is true when
    either bound cut the page."""
    budget = settings.EVENTS_PAGE_MAX_BYTES
    log = bus.read_after(after, min(limit, _READ_BATCH))
    latest_id, gap = log.latest_id, log.gap
    events, size, examined, last_id, full = [], 0, 0, None, False
    while True:
        for event_id, topics, text in log.events:
            visible = view.sees(topics, granted)
            if visible and size and size + len(text) > budget:
                full = True
                break
            examined, last_id = examined + 1, event_id
            if visible:
                events.append(json.loads(text))
                size += len(text)
        if full or examined >= limit or len(log.events) < min(limit, _READ_BATCH):
            break
        log = bus.read_after(last_id, min(limit - examined, _READ_BATCH))
        if not log.events:
            break
    next_after = last_id if last_id is not None else max(after, latest_id if not gap else after)
    return EventsPage(events, latest_id, next_after, full or examined == limit, gap)


TEST_EVENT = inline_serializer("TestEvent", {"id": serializers.IntegerField(allow_null=True), "via": serializers.CharField()})


class StaffOnly(permissions.IsAdminUser):
    # A refusal names the role needed, like every other 403 (issue 14).
    message = "Sending test events needs an admin (staff) account."


class TestEventView(APIView):
    """Publish a test event (an `activity_update` of type `test`): staff only, for diagnostics.

    `{"via": "worker"}` publishes it from inside a Celery worker instead, proving the whole path.
    """

    permission_classes = [StaffOnly, TokenScopePermission]

    @extend_schema(
        request=inline_serializer("TestEventRequest", {"via": serializers.ChoiceField(["server", "worker"], required=False)}),
        responses={201: TEST_EVENT, 202: TEST_EVENT},
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Send a JSON object (or a form)."]})
        via = request.data.get("via", "server")
        if via not in ("server", "worker"):
            raise serializers.ValidationError({"via": ['Choose "server" or "worker".']})
        username = request.user.get_username()
        if via == "worker":
            publish_test_event.delay(username)
            return Response({"id": None, "via": via}, status=202)
        event_id = publish(test_activity(username, "the Live events page"))
        if event_id is None:
            return Response({"detail": "Redis did not take the event."}, status=503)
        return Response({"id": event_id, "via": via}, status=201)


class ActivitySerializer(serializers.ModelSerializer):
    """The same object `activity_update` carries in `activity`."""

    def to_representation(self, instance):
        return activity_payload(instance)

    class Meta:
        model = Activity
        fields = ["id"]


class ActivityFilters(ProjectFilters):
    action_type = serializers.CharField(max_length=40, required=False)
    user = serializers.CharField(max_length=150, required=False, help_text="A username or a user id.")


class ActivityViewSet(ProjectScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The activity feed, newest first: the lines of your projects (staff: also the system-wide ones,
    as `activity_update` on the socket). Filters: `project`, `action_type`, `user` (a username or an id)."""

    serializer_class = ActivitySerializer
    filters_class = ActivityFilters

    def get_queryset(self):
        rows = self.scoped(Activity.objects.select_related("user"))
        filters = self.filters()
        if "action_type" in filters:
            rows = rows.filter(action_type=filters["action_type"])
        user = filters.get("user")
        if user:
            if user.isdigit() and len(user) <= 18:
                rows = rows.filter(user_id=int(user))
            else:
                if not get_user_model().objects.filter(username=user).exists():
                    raise serializers.ValidationError({"user": [f"No user named {user!r}."]})
                rows = rows.filter(user__username=user)
        return rows

