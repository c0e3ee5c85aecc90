"""API of the tokens: log in for a key (`POST /api/auth/token/`), and list, create, revoke one's own."""

from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_logged_in
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, permissions, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from .account import lockout_message, lockout_seconds
from .filters import MAX_ID
from .models import ApiToken, TokenScope
from .tokens import api_token_create, api_tokens_of


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """`Authorization: Token <key>` in the OpenAPI schema."""

    target_class = "mlops_dashboard.tokens.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": 'An API token with the prefix "Token": `Token <key>` (POST /api/auth/token/).'}


class TextField(serializers.CharField):
    """A string, and only a string (DRF's CharField would take `0` as "0")."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ApiTokenSerializer(serializers.ModelSerializer):
    """A token as its owner sees it: never the key (shown once, at creation) nor its digest."""

    name = TextField(max_length=100, required=False, allow_blank=True, default="")
    project = serializers.IntegerField(
        source="project_id", min_value=1, max_value=MAX_ID, required=False, allow_null=True, default=None,
        help_text="Limit the token to this project (one of GET /api/projects/); null: all of yours.")
    scope = serializers.ChoiceField(
        TokenScope.choices, required=False, default=TokenScope.ALL,
        help_text="`all`: your rights; `predict`: prediction endpoints only; `telemetry`: telemetry ingest only.")

    class Meta:
        model = ApiToken
        fields = ["id", "name", "project", "scope", "created", "expiry", "last_used_at"]
        read_only_fields = ["id", "created", "expiry", "last_used_at"]


class NewApiTokenSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The key: shown only in this answer.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]


class TokenLoginSerializer(serializers.Serializer):
    username = TextField(max_length=150)
    password = TextField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})
    name = TextField(max_length=100, required=False, allow_blank=True, default="",
                                 help_text="A name for the new token (shown on the API tokens page).")


class TokenLoginView(APIView):
    """Trade a user name and password for a new API token (`Authorization: Token <key>`).

    Each call makes a token that expires after API_TOKEN_TTL_DAYS; list and revoke them at
    /api/auth/tokens/ or on the API tokens page. Repeated failures lock out the user name for the
    calling address (429)."""

    authentication_classes = []
    permission_classes = [permissions.AllowAny]
    serializer_class = TokenLoginSerializer

    # 400 (wrong user name or password) and 429 (locked out, or throttled) come from schema.py.
    @extend_schema(request=TokenLoginSerializer, responses={200: NewApiTokenSerializer})
    def post(self, request):
        login = TokenLoginSerializer(data=request.data)
        login.is_valid(raise_exception=True)
        # The Django request, so that axes counts the failure and sees a lockout.
        django_request = request._request
        user = authenticate(request=django_request, username=login.validated_data["username"],
                            password=login.validated_data["password"])
        if getattr(django_request, "axes_locked_out", False):
            raise exceptions.Throttled(wait=lockout_seconds(), detail=lockout_message())
        if user is None:
            raise serializers.ValidationError({"non_field_errors": ["Unable to log in with provided credentials."]})
        token, key = api_token_create(user=user, name=login.validated_data["name"] or "POST /api/auth/token/")
        # A login like the page's (no session): the activity feed, last_login, and axes forgetting
        # this name and address's earlier failures.
        user_logged_in.send(sender=user.__class__, request=django_request, user=user)
        return Response({**NewApiTokenSerializer(token).data, "token": key})


class ApiTokenViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Your API tokens: list them (newest first), create one (its key is in that answer only), revoke one."""

    serializer_class = ApiTokenSerializer
    extra_error_statuses = {"POST": {404}}  # a `project` the user cannot see

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return ApiToken.objects.none()
        return api_tokens_of(self.request.user)

    @extend_schema(request=ApiTokenSerializer, responses={201: NewApiTokenSerializer})
    def create(self, request):
        body = ApiTokenSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        token, key = api_token_create(user=request.user, name=data.get("name", ""),
                                      project=data.get("project_id"), scope=data.get("scope", TokenScope.ALL))
        return Response({**NewApiTokenSerializer(token).data, "token": key}, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        instance.delete()  # through the ORM: post_delete fires (open sockets on it close)
