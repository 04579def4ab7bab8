from django.db.models import OuterRef, Subquery
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from apps.common.api import AccountViewSet

from . import resolution, services
from .models import Invitation, Membership, Tenant
from .roles import Role
from .serializers import (
    AcceptInvitationSerializer,
    InvitationSerializer,
    MemberCreateSerializer,
    MemberSerializer,
    MemberUpdateSerializer,
    MyInvitationSerializer,
    TenantSerializer,
    TenantUserSerializer,
)
from .viewsets import ResourceViewSet, TenantReadOnlyViewSet, TenantScopedViewSet


class TenantViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    AccountViewSet,
):
    """The tenants I belong to, with my role in each. Creating one makes me its OWNER."""

    serializer_class = TenantSerializer
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    filterset_fields = ["status"]
    search_fields = ["name", "slug"]
    ordering_fields = ["name", "created_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Tenant.objects.none()
        role = Membership.objects.filter(tenant=OuterRef("pk"), user=self.request.user).values("role")[:1]
        return Tenant.objects.filter(memberships__user=self.request.user).annotate(my_role=Subquery(role))

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.tenant_create(
            actor=self.request.user,
            name=data["name"],
            default_currency=data.get("default_currency", "USD"),
            country=data.get("country", ""),
        )
        serializer.instance.my_role = Role.OWNER.value

    def perform_update(self, serializer):
        tenant = serializer.instance
        if not Role(tenant.my_role).includes(Role.ADMIN):
            raise PermissionDenied("Only owners and admins change the tenant's settings.")
        # Changing a tenant is acting in it: its policy (IP allowlist, required 2FA) applies here too.
        ctx = resolution.TenantContext(tenant=tenant, role=Role(tenant.my_role))
        for check in resolution.REQUEST_CHECKS:
            check(self.request, ctx)
        updated = services.tenant_update(tenant=tenant, data=serializer.validated_data)
        updated.my_role = tenant.my_role
        serializer.instance = updated

    @extend_schema(
        request=AcceptInvitationSerializer,
        responses={201: MemberSerializer},
        summary="Accept an invitation sent to my email",
    )
    @action(detail=False, methods=["post"], url_path="accept-invitation")
    def accept_invitation(self, request):
        serializer = AcceptInvitationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.invitation_accept(user=request.user, raw_token=serializer.validated_data["token"])
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)


class MemberViewSet(ResourceViewSet):
    """Members of one tenant. Only OWNER/ADMIN manage them: `POST` invites (nobody joins without accepting);
    only an OWNER grants or removes OWNER; the last OWNER cannot leave. Anyone may leave (DELETE their own
    membership); a removal revokes the member's API tokens in the tenant."""

    queryset = Membership.objects.select_related("user")
    serializer_class = MemberSerializer
    input_serializers = {"create": MemberCreateSerializer, "update": MemberUpdateSerializer}
    # Adding a member invites them: the answer is the invitation.
    output_serializers = {"create": InvitationSerializer}
    update_methods = {"patch": False}  # the role is the one thing to change, and it is required
    destroy_answers_object = False
    summaries = {
        "create": "Invite someone by email (they join when they accept; the answer never tells if they have an account)"
    }
    tenant_url_kwarg = "tenant_pk"
    filterset_fields = ["role"]
    search_fields = ["user__email", "user__full_name"]
    ordering_fields = ["created_at", "role"]
    required_roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "create": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.VIEWER,  # leaving is open to all; removing others is checked by the service
    }

    def create_resource(self, data):
        return services.member_add(tenant=self.tenant, actor=self.request.user, actor_role=self.tenant_role,
                                   email=data["email"], role=data["role"])  # fmt: skip

    def update_resource(self, obj, data):
        return services.member_change_role(membership=obj, actor_role=self.tenant_role, role=data["role"])

    def destroy_resource(self, obj):
        services.member_remove(membership=obj, actor=self.request.user, actor_role=self.tenant_role)


class InvitationViewSet(mixins.ListModelMixin, mixins.DestroyModelMixin, TenantScopedViewSet):
    """Open and past invitations of one tenant; DELETE revokes an open one."""

    queryset = Invitation.objects.all()
    serializer_class = InvitationSerializer
    tenant_url_kwarg = "tenant_pk"
    required_roles = {"list": Role.ADMIN, "destroy": Role.ADMIN}
    filterset_fields = ["role"]
    ordering_fields = ["created_at"]

    def perform_destroy(self, instance):
        services.invitation_revoke(invitation=instance, actor_role=self.tenant_role)


class MyInvitationViewSet(mixins.ListModelMixin, AccountViewSet):
    """Invitations addressed to me that wait for my answer. `POST {id}/accept/` joins the
    tenant with the invited role; `POST {id}/decline/` refuses. Someone else's invitation is 404."""

    serializer_class = MyInvitationSerializer
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    filterset_fields = ["role"]
    ordering_fields = ["created_at", "expires_at"]
    ordering = ["-created_at"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Invitation.objects.none()
        return services.invitations_pending_for(self.request.user).select_related("tenant", "invited_by")

    @extend_schema(request=None, responses={201: MemberSerializer}, summary="Accept an invitation: join its tenant")
    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None):
        membership = services.invitation_accept(user=request.user, invitation_id=pk)
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: MyInvitationSerializer}, summary="Decline an invitation")
    @action(detail=True, methods=["post"])
    def decline(self, request, pk=None):
        invitation = services.invitation_decline(user=request.user, invitation_id=pk)
        return Response(MyInvitationSerializer(invitation).data)


class UserViewSet(TenantReadOnlyViewSet):
    """The members of the current tenant (``/users``), addressed by user id."""

    queryset = Membership.objects.select_related("user")
    serializer_class = TenantUserSerializer
    lookup_field = "user_id"
    lookup_url_kwarg = "pk"
    filterset_fields = ["role"]
    search_fields = ["user__email", "user__full_name"]
    ordering_fields = ["created_at", "user__email", "role"]
    ordering = ["created_at"]
    required_roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER}
