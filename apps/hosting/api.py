from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

from . import services
from .models import AccountStatus, HostingAccount, Todo, TodoKind, TodoStatus
from .selectors import with_usage
from .serializers import HostingAccountLimitsSerializer, HostingAccountSerializer, TodoCloseSerializer, TodoSerializer


class HostingAccountFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=AccountStatus.choices)

    class Meta:
        model = HostingAccount
        fields = ["status", "customer", "subscription", "node"]


class HostingAccountViewSet(ResourceViewSet):
    """Hosting accounts, one per hosting-plan subscription (made when its first invoice is paid):
    MEMBER+ read them with their limits and usage; ADMIN+ change an account's limits (PATCH
    ``limit_overrides``; refused with 409 naming what is over when less than what is in use)."""

    queryset = with_usage(HostingAccount.objects.select_related("subscription__product"))
    serializer_class = HostingAccountSerializer
    input_serializers = {"update": HostingAccountLimitsSerializer}
    update_methods = {"patch": False}
    filterset_class = HostingAccountFilter
    search_fields = ["domain", "system_user"]
    ordering_fields = ["created_at", "domain", "status", "disk_used_mb"]
    ordering = ["-created_at"]
    summaries = {"partial_update": "Change the account's limits (overrides on top of the plan)"}
    required_roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "partial_update": Role.ADMIN,
    }

    def update_resource(self, obj, data):
        return services.account_set_overrides(account=obj, overrides=data["limit_overrides"], actor=self.request.user)


class TodoFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=TodoStatus.choices)
    kind = filters.ChoiceFilter(choices=TodoKind.choices)

    class Meta:
        model = Todo
        fields = ["status", "kind", "customer", "subscription"]


class TodoViewSet(ResourceViewSet):
    """The staff's to-dos: services sold (one-off work to deliver) and what the reconciliation check
    of hosting plans could not fix by itself. MEMBER+ read and close them."""

    queryset = Todo.objects.select_related("closed_by")
    serializer_class = TodoSerializer
    input_serializers = {"close": TodoCloseSerializer}
    filterset_class = TodoFilter
    search_fields = ["title", "detail"]
    ordering_fields = ["created_at", "status", "last_seen_at"]
    ordering = ["status", "-created_at"]
    required_roles = {"list": Role.MEMBER, "retrieve": Role.MEMBER, "close": Role.MEMBER}

    @extend_schema(request=TodoCloseSerializer, responses={200: TodoSerializer}, summary="Close the to-do (done)")
    @action(detail=True, methods=["post"])
    def close(self, request, pk=None):
        data = self.validated()
        todo = services.todo_close(todo=self.get_object(), resolution=data.get("resolution", ""), actor=request.user)
        return self.answer(todo)
