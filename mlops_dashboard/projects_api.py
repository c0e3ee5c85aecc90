"""API of projects and their members: `/api/projects/`, `/api/projects/<id>/members/[<username>/]`."""

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.response import Response

from . import memberships, permissions
from .filters import MAX_ID, FilteredListMixin, ProjectFilters
from .models import DESCRIPTION_MAX_LENGTH, Membership, Project, Role
from .projects import Conflict, project_create, project_create_check
from .tokens_api import TextField

# Django's username characters (letters, digits and @ . + - _): dots included.
USERNAME_REGEX = r"[\w.@+-]{1,150}"


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's state does not allow this now."
    default_code = "conflict"


class ProjectSerializer(serializers.ModelSerializer):
    name = TextField(max_length=100)
    slug = serializers.SlugField(max_length=50, required=False, allow_blank=True,
                                 help_text="Derived from the name when not given.")
    description = TextField(max_length=DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True, default="")
    role = serializers.SerializerMethodField(help_text="Your role in it: viewer, editor, maintainer, or admin (staff).")

    class Meta:
        model = Project
        fields = ["id", "name", "slug", "description", "role"]
        read_only_fields = ["id", "role"]

    def get_role(self, project) -> str | None:
        return permissions.role_in(self.context["request"].user, project)


class ProjectViewSet(FilteredListMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Projects you may see (staff: every project), with your role in each. Creating one is for
    staff (admins), who are not made its members; an existing slug is a 409."""

    serializer_class = ProjectSerializer
    filters_class = ProjectFilters

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Project.objects.none()
        projects = permissions.visible_projects(self.request.user).order_by("name", "id")
        project = self.filters().get("project")
        return projects if project is None else projects.filter(pk=project)

    @extend_schema(request=ProjectSerializer, responses={201: ProjectSerializer})
    def create(self, request):
        project_create_check(request.user)  # before reading the body: a non-admin gets 403, whatever it sent
        body = ProjectSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            project = project_create(user=request.user, name=data["name"], slug=data.get("slug") or None,
                                     description=data.get("description", ""))
        except Conflict as exc:
            raise ConflictError(str(exc)) from None
        return Response(ProjectSerializer(project, context={"request": request}).data, status=status.HTTP_201_CREATED)


class MemberSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["user", "role", "added_at"]
        read_only_fields = fields


class NewMemberSerializer(serializers.Serializer):
    user = TextField(max_length=150, help_text="A username.")
    role = serializers.ChoiceField(Role.choices)


class MemberRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(Role.choices)


PROJECT_ID = OpenApiParameter("project_id", int, OpenApiParameter.PATH, description="The project's id.")
USERNAME = OpenApiParameter("username", str, OpenApiParameter.PATH, description="The member's username.",
                            pattern=f"^{USERNAME_REGEX}$")


@extend_schema_view(
    list=extend_schema(parameters=[PROJECT_ID]),
    create=extend_schema(parameters=[PROJECT_ID], request=NewMemberSerializer, responses={201: MemberSerializer}),
    retrieve=extend_schema(parameters=[PROJECT_ID, USERNAME]),
    partial_update=extend_schema(parameters=[PROJECT_ID, USERNAME], request=MemberRoleSerializer,
                                 responses={200: MemberSerializer}),
    destroy=extend_schema(parameters=[PROJECT_ID, USERNAME], responses={204: None}),
)
class MemberViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """A project's members and their roles: every member reads them; maintainers and staff add,
    change and remove them (and only they grant `maintainer`). An unknown user is a 400, one already
    a member a 409, and removing or demoting the project's last maintainer a 409."""

    serializer_class = MemberSerializer
    lookup_field = "username"
    lookup_value_regex = USERNAME_REGEX
    pagination_class = None  # a project's members are few; the list is whole

    def project(self) -> Project:
        if not hasattr(self, "_project"):
            pk = int(self.kwargs["project_id"])
            project = permissions.visible_projects(self.request.user).filter(pk=pk).first()
            if project is None:
                raise Http404("No such project.")
            self._project = project
        return self._project

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Membership.objects.none()
        return memberships.memberships_of(self.project())

    def retrieve(self, request, project_id, username):
        membership = self.get_queryset().filter(user__username=username).first()
        if membership is None:
            raise Http404("No such member.")
        return Response(MemberSerializer(membership).data)

    def create(self, request, project_id):
        permissions.authorize(request.user, "manage", self.project())  # before reading the body
        body = NewMemberSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            membership = memberships.membership_add(user=request.user, project=self.project(),
                                                    username=body.validated_data["user"], role=body.validated_data["role"])
        except Conflict as exc:
            raise ConflictError(str(exc)) from None
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, project_id, username):
        permissions.authorize(request.user, "manage", self.project())  # before reading the body
        body = MemberRoleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            membership = memberships.membership_change(user=request.user, project=self.project(),
                                                       username=username, role=body.validated_data["role"])
        except Conflict as exc:
            raise ConflictError(str(exc)) from None
        return Response(MemberSerializer(membership).data)

    def destroy(self, request, project_id, username):
        try:
            memberships.membership_remove(user=request.user, project=self.project(), username=username)
        except Conflict as exc:
            raise ConflictError(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


MEMBERS_PREFIX = rf"projects/(?P<project_id>[0-9]{{1,{len(str(MAX_ID))}}})/members"
