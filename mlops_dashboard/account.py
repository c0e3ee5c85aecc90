"""The account area (API tokens, password change) and the login lockout's answer."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.exceptions import ValidationError
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from .api_errors import PROBLEM, problem
from . import permissions
from .models import ApiToken, Project, TokenScope
from .tokens import api_token_create, api_token_revoke, api_tokens_of

# --- lockout (django-axes) -------------------------------------------------------------------------


def lockout_seconds() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def lockout_message() -> str:
    minutes = max(1, round(lockout_seconds() / 60))
    return (f"Too many failed logins for this user name from your address: locked out for {minutes} "
            f"minute{'s' if minutes != 1 else ''}. Try again later, or ask an administrator to unlock it.")


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: 429 with problem details under /api/, a readable page elsewhere."""
    if isinstance(original_response, HttpResponse) and original_response.status_code == 429:
        return original_response  # the API view already answered it
    if request.path_info.startswith("/api/"):
        response = JsonResponse(problem(429, lockout_message(), code="locked_out"), status=429, content_type=PROBLEM)
    else:
        response = render(request, "registration/locked_out.html", {"message": lockout_message()}, status=429)
    response["Retry-After"] = str(lockout_seconds())
    return response


# --- API tokens page -------------------------------------------------------------------------------


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=ApiToken._meta.get_field("name").max_length, required=True,
                           help_text="What uses it: a script, a notebook, a CI job.")
    project = forms.ModelChoiceField(Project.objects.none(), required=False, empty_label="All my projects",
                                     help_text="Limit it to one project: it sees and does nothing elsewhere.")
    scope = forms.ChoiceField(choices=TokenScope.choices, initial=TokenScope.ALL, required=False,
                              help_text="What it may call: everything you may, or only predictions or telemetry.")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = permissions.visible_projects(user)


@never_cache
@require_http_methods(["GET", "POST"])
def api_tokens(request):
    """List the user's tokens; a POST makes one, whose key this answer shows once (never stored)."""
    form, new_key = ApiTokenForm(request.POST or None, user=request.user), None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                _, new_key = api_token_create(user=request.user, name=form.cleaned_data["name"],
                                              project=form.cleaned_data["project"],
                                              scope=form.cleaned_data["scope"] or TokenScope.ALL)
            except ValidationError as exc:
                form.add_error(None, exc.messages)
            else:
                form = ApiTokenForm(user=request.user)
        if new_key is None:
            status = 400
    context = {
        "nav": "account", "form": form, "new_key": new_key,
        "tokens": api_tokens_of(request.user).select_related("project"),
        "ttl_days": settings.API_TOKEN_TTL_DAYS,
    }
    return render(request, "account/tokens.html", context, status=status)


@require_POST
def api_token_revoke_view(request, token_id: int):
    try:
        api_token_revoke(user=request.user, token_id=token_id)
    except ApiToken.DoesNotExist:
        messages.error(request, "That token is already gone.")
    else:
        messages.success(request, "Token revoked: programs using it are refused from now on.")
    return redirect("account-tokens")


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change (keeps this session: update_session_auth_hash); the change revokes
    the user's API tokens and ends their other sessions."""

    template_name = "account/password_change.html"
    success_url = reverse_lazy("account-tokens")
    extra_context = {"nav": "password"}

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Password changed. Your API tokens were revoked and your other "
                                       "sessions logged out.")
        return response
