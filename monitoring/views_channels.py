"""The Monitoring page's "Notification channels" section: the list (each row a fragment that
static/js/pages/monitoring_channels.js re-renders on notification_sent / notification_failed), the
create form, and the enable / disable, send test and delete buttons. Every write goes through
monitoring.services.channels; the URL is write-only (the form never renders it back)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from mlops_dashboard import permissions
from mlops_dashboard.models import Role

from . import notify
from .models import Delivery, NotificationChannel, Priority
from .services import channels as channel_services

ROWS_MAX = 200


class ChannelForm(forms.Form):
    prefix = "channel"  # the rule form on the same page has its own `name`

    name = forms.CharField(max_length=100)
    url = forms.CharField(
        label="URL", max_length=notify.URL_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "spellcheck": "false",
                                                              "placeholder": "mailto://… · slack://… · json://host/path"}),
        help_text="An apprise URL. It is never shown again: the list shows its scheme and host only.")
    min_priority = forms.ChoiceField(label="Minimum priority", choices=Priority.choices, initial=Priority.LOW)
    default_route = forms.BooleanField(label="Default route", required=False, initial=True,
                                       help_text="Receives the alerts of every rule that names no channel.")
    # Any id: the service answers 404 for a project the user cannot see, 403 without the role.
    project = forms.IntegerField(
        label="For", required=False, min_value=1, widget=forms.Select(),
        help_text="A project's channel receives the alerts of the project's own rules (those naming it, and with "
                  "default route those naming none); global rules send to global channels only.")

    def __init__(self, *args, user=None, current=None, **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("", "Every project (global, admin)")] if permissions.is_admin(user) else []
        for project in permissions.visible_projects(user).order_by("name"):
            if permissions.has_role(user, project, Role.MAINTAINER):
                choices.append((project.pk, project.name))
        self.fields["project"].widget.choices = choices
        if not self.is_bound:
            self.initial["project"] = current.pk if current is not None and any(c[0] == current.pk for c in choices) \
                else (choices[0][0] if choices else "")


def _form_denied(user) -> str:
    """Why the user may not make a channel ("" when they may): staff, or a maintainer of a project."""
    if permissions.is_admin(user):
        return ""
    if any(role == Role.MAINTAINER for role in permissions.roles(user).values()):
        return ""
    return "Notification channels are made by a project's maintainers, or by an admin (staff) for every project."


def _with_last_delivery(channels: list[NotificationChannel]) -> list[NotificationChannel]:
    for channel in channels:
        channel.last_delivery = (Delivery.objects.filter(channel=channel).select_related("notification")
                                 .order_by("-created_at", "-id").first())
    return channels


def channels_context(request, project=None, form=None) -> dict:
    """What templates/monitoring/includes/channels.html needs: the channels the user sees (the global
    ones and the current project's, or all of theirs without a current project), the form."""
    user = request.user
    rows = permissions.visible(NotificationChannel.objects.select_related("project"), user, include_global=True)
    if project is not None:
        rows = rows.filter(project__isnull=True) | rows.filter(project_id=project.pk)
    return {
        "channels": _with_last_delivery(list(rows.order_by("project_id", "name", "id")[:ROWS_MAX])),
        "channel_form": form or ChannelForm(user=user, current=project),
        "channel_form_denied": _form_denied(user),
        "channel_row_url": reverse("monitoring:channel-row", args=[0]),
    }


def _back():
    return redirect(reverse("monitoring:index") + "#channels")


def _visible_channel(request, pk: int) -> NotificationChannel:
    return permissions.get_visible(NotificationChannel.objects.select_related("project"), request.user, pk=pk)


@require_POST
def channel_create(request):
    from mlops_dashboard.projects import current_project

    from .views import _index_context

    form = ChannelForm(request.POST, user=request.user, current=current_project(request))
    if form.is_valid():
        data = form.cleaned_data
        try:
            channel = channel_services.channel_create(
                user=request.user, project=data.get("project"), name=data["name"], url=data["url"],
                min_priority=data["min_priority"], default_route=data["default_route"])
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        except channel_services.ChannelConflict as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, f"Notification channel “{channel.name}” created ({channel.url_masked}).")
            return _back()
    context = _index_context(request)
    context.update(channels_context(request, project=context.get("project"), form=form))
    return render(request, "monitoring/index.html", context, status=400)


@require_POST
def channel_toggle(request, pk: int):
    channel = _visible_channel(request, pk)
    channel = channel_services.channel_set_enabled(user=request.user, channel=channel, enabled=not channel.enabled)
    messages.success(request, f"Notification channel “{channel.name}” {'enabled' if channel.enabled else 'disabled'}.")
    return _back()


@require_POST
def channel_test(request, pk: int):
    channel = _visible_channel(request, pk)
    channel_services.channel_test(user=request.user, channel=channel)
    messages.success(request, f"Test message to “{channel.name}” queued.")
    return _back()


@require_POST
def channel_delete(request, pk: int):
    channel = _visible_channel(request, pk)
    name = channel.name
    channel_services.channel_delete(user=request.user, channel=channel)
    messages.success(request, f"Notification channel “{name}” deleted.")
    return _back()


@require_GET
def channel_row(request, pk: int):
    """One row of the channels table (a fragment for static/js/pages/monitoring_channels.js)."""
    (channel,) = _with_last_delivery([_visible_channel(request, pk)])
    return render(request, "monitoring/includes/channel_row.html", {"channel": channel})
