"""The account's notifications page: the personal route "notify me when my jobs fail"."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from . import services


@require_http_methods(["GET", "POST"])
def account_notifications(request):
    """GET shows the setting and whether it can work (a global email channel, the user's address);
    POST saves the checkbox (the user's own, nobody else's)."""
    if request.method == "POST":
        wanted = request.POST.get("my_jobs_failed") in ("on", "true", "1")
        services.preference_set(user=request.user, my_jobs_failed=wanted)
        messages.success(request, "You will get an email when a job you started fails." if wanted
                         else "You will no longer get an email when a job you started fails.")
        return redirect("account-notifications")
    return render(request, "account/notifications.html", {"nav": "notifications", **services.preference_get(request.user)})
