"""API tokens (django-rest-knox with our ApiToken model): create, authenticate, revoke, prune.

A key is shown once, when it is made; the database keeps its first characters (`token_key`, to find
the row) and a SHA-512 digest of the whole key. Every revocation and expiry deletes rows through the
ORM, so `post_delete` of ApiToken fires for each (open sockets follow it).
"""

from datetime import timedelta
from hmac import compare_digest

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.db.models.signals import post_save, pre_save
from django.dispatch import Signal
from django.utils import timezone
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from knox.settings import CONSTANTS
from django.http import Http404
from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from . import auth_cache
from .models import ApiToken, Project, TokenScope

# A minute between two writes of a token's last use: a program calling many times a second costs
# one UPDATE a minute, not one per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Longer than any key we issue (prefix + 64 hex) or issued (DRF's 40 hex): refused without hashing.
MAX_KEY_LENGTH = 200


def api_token_create(*, user, name: str = "", project=None, scope: str = TokenScope.ALL) -> tuple[ApiToken, str]:
    """A new token of `user` expiring after API_TOKEN_TTL_DAYS: (the row, the key, shown only now).

    `project` (a Project or its id) limits it to that project, one the user can see (else Http404);
    `scope` limits it to one kind of use (`predict`, `telemetry`). A request made with a token
    limited to a project makes tokens limited to that project only (no way out of the limit)."""
    from . import permissions

    if not user.is_active:
        raise ValidationError("An inactive user cannot hold API tokens.")
    if scope not in TokenScope.values:
        raise ValidationError({"scope": f"One of {', '.join(TokenScope.values)}."})
    limit = getattr(user, "token_project_id", None)
    if project in (None, "") and limit is not None:
        project = limit
    if project not in (None, ""):
        if not isinstance(project, Project):
            try:
                pk = int(project)
            except (TypeError, ValueError):
                raise ValidationError({"project": "A project id (an integer)."}) from None
            project = Project.objects.filter(pk=pk).first()
        if project is None or not permissions.can_see(user, project):
            raise Http404("No such project.")
    else:
        project = None
    live = ApiToken.objects.filter(user=user).filter(Q(expiry__isnull=True) | Q(expiry__gt=timezone.now()))
    if live.count() >= settings.API_TOKENS_PER_USER:
        raise ValidationError(
            {"name": f"You already hold {settings.API_TOKENS_PER_USER} live API tokens: revoke one first "
                     "(/account/tokens/)."}
        )
    name = name.strip()
    if len(name) > ApiToken._meta.get_field("name").max_length:
        raise ValidationError({"name": "At most 100 characters."})
    return ApiToken.objects.create(user=user, name=name, project=project, scope=scope)


def api_token_revoke(*, user, token_id: int) -> None:
    """Revoke one of `user`'s own tokens; another user's (or an unknown id) is not found."""
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        raise ApiToken.DoesNotExist(f"No API token {token_id} of yours.")
    token.delete()


def api_tokens_revoke_all(*, user) -> int:
    """Revoke every token of `user` (a password change); returns how many."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return deleted


def api_tokens_prune_expired() -> int:
    """Delete expired tokens (run by beat); they are already refused from the moment they expire."""
    deleted, _ = ApiToken.objects.filter(expiry__lte=timezone.now()).delete()
    return deleted


def api_tokens_of(user):
    return ApiToken.objects.filter(user=user).order_by("-created", "-id")


def api_token_check(key: str) -> ApiToken:
    """The live token whose key is `key` (its user loaded, its last use noted), else AuthenticationFailed.
    From this process's cache when it holds the key (auth_cache.py: changes honoured within a second)."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise exceptions.AuthenticationFailed("Invalid token.")
    now = timezone.now()
    token = auth_cache.token_get(key)
    if token is not None and (token.expiry is None or token.expiry > now):
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            _note_use(token, now)
            auth_cache.token_used(key, now)
        return token
    token = _token_read(key, now)
    auth_cache.token_put(key, token)
    return token


def api_token_peek(key: str) -> ApiToken | None:
    """The live token of `key` as api_token_check gives it, when that needs no I/O: from this
    process's cache, not expired, its last use noted recently enough. None otherwise (and for a key
    that is not a token): the caller then takes the path that calls api_token_check."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return None
    token = auth_cache.token_peek(key)
    if token is None:
        return None
    now = timezone.now()
    if token.expiry is not None and token.expiry <= now:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        return None
    return token


def _token_read(key: str, now) -> ApiToken:
    digest = hash_token(key)
    for token in ApiToken.objects.filter(token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH]).select_related("user"):
        if compare_digest(digest, token.digest):
            break
    else:
        raise exceptions.AuthenticationFailed("Invalid token.")
    if token.expiry is not None and token.expiry <= now:
        token.delete()
        raise exceptions.AuthenticationFailed("Token expired: create a new one (/account/tokens/).")
    if not token.user.is_active:
        raise exceptions.AuthenticationFailed("User inactive or deleted.")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        _note_use(token, now)
    return token


def _note_use(token: ApiToken, now) -> None:
    # Conditional: of several requests racing past the check, one writes (an UPDATE sends no signal).
    ApiToken.objects.filter(pk=token.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
    token.last_used_at = now


class ApiTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>` for the REST API (knox's scheme, with our checks above instead of
    knox's scan of the user's other tokens on every request)."""

    def authenticate_credentials(self, token):
        key = token.decode("utf-8", "replace") if isinstance(token, bytes) else token
        api_token = api_token_check(key)
        return token_user(api_token), api_token


def token_user(token: ApiToken):
    """The token's user, narrowed to the token's project when it has one (permissions read
    `token_project_id`): what a request or a socket made with this token may do."""
    user = token.user
    user.token_project_id = token.project_id
    user.token_scope = token.scope
    return user


def token_allows_socket(token: ApiToken) -> bool:
    """Only an `all` token opens the live socket: a `predict` or `telemetry` token is for one kind of
    call. (The socket's authentication refuses the others; it also narrows with token_user.)"""
    return token.scope == TokenScope.ALL


SCOPE_USES = {TokenScope.PREDICT: "prediction endpoints", TokenScope.TELEMETRY: "telemetry ingest"}


class TokenScopePermission(BasePermission):
    """A token of a scope other than `all` calls only the views that declare that scope in their
    `token_scopes` class attribute (prediction views: `("predict",)`); anything else is a 403."""

    message = "This token's scope does not allow this endpoint."

    def has_permission(self, request, view):
        token = request.auth
        if not isinstance(token, ApiToken) or token.scope == TokenScope.ALL:
            return True
        if token.scope in getattr(view, "token_scopes", ()):
            return True
        self.message = (f"This token has the scope “{token.scope}”: it may call only the "
                        f"{SCOPE_USES.get(token.scope, token.scope)}. Use a token of scope “all” here.")
        return False


# --- a password change revokes the user's tokens ------------------------------------------------

# Sent (with `user`) after a user's password changed and their tokens were revoked: the one place to
# hang anything else that must follow a password change.
password_changed = Signal()


def _note_password_change(sender, instance, update_fields=None, **kwargs):
    """Before a user is saved: was the password set (`set_password`, whatever calls it: the password
    page, the admin, `changepassword`), or the stored hash replaced by hand?

    Django's own re-hash on login (same password, new hasher parameters) saves only `password` with
    `_password` reset, and is not a change."""
    if instance._state.adding or (update_fields is not None and "password" not in update_fields):
        return
    if getattr(instance, "_password", None) is not None:
        instance._revoke_api_tokens = True
    elif update_fields is None:
        stored = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
        instance._revoke_api_tokens = stored is not None and stored != instance.password


def _revoke_on_password_change(sender, instance, created=False, **kwargs):
    if getattr(instance, "_revoke_api_tokens", False):
        instance._revoke_api_tokens = False
        api_tokens_revoke_all(user=instance)
        password_changed.send(sender=sender, user=instance)


def connect_signals():
    """Called from the app's ready(). Other sessions end by themselves: Django ties each session to
    the password hash (the password page keeps its own with update_session_auth_hash)."""
    user_model = get_user_model()
    pre_save.connect(_note_password_change, sender=user_model, dispatch_uid="mlops_dashboard.tokens.note")
    post_save.connect(_revoke_on_password_change, sender=user_model, dispatch_uid="mlops_dashboard.tokens.revoke")
