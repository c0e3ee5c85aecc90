from django.conf import settings

from .events import bus


def realtime(request):
    """Configuration for static/js/realtime.js, rendered into each page with json_script."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {
        "realtime_config": {
            "wsPath": "/ws/",
            "eventsApi": "/api/events/",
            # Events after this id are replayed when the socket opens: nothing between the
            # page's render and the socket's connect is missed.
            "lastEventId": bus.latest_id(),
            "userId": request.user.id,
            "isStaff": request.user.is_staff,
            "debug": settings.DEBUG,
        }
    }


def projects(request):
    """The project switcher's and the sidebar's: `current_project`, `current_role` (the user's role
    in it, `admin` for staff) and `user_projects` (each with `.role`)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from .project_views import switcher_context

    return switcher_context(request)
