from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantReadOnlyViewSet

from . import services
from .filters import JobFilter
from .models import Job
from .serializers import JobDetailSerializer, JobSerializer


class ProvisioningViewSet(TenantReadOnlyViewSet):
    """Jobs (``/ops/provisioning``): tenant ADMIN+ see their own; operators see all.

    A FAILED or CANCELLED job can be retried; a PENDING one cancelled (409 otherwise).
    """

    queryset = Job.objects.all()
    serializer_class = JobSerializer
    filterset_class = JobFilter
    ordering_fields = ["created_at", "status", "type"]
    ordering = ["-created_at"]
    search_fields = ["type", "object_id"]
    operators_see_all = True
    operator_actions = frozenset({"list", "retrieve", "retry", "cancel"})
    required_roles = {"list": Role.ADMIN, "retrieve": Role.ADMIN, "retry": Role.ADMIN, "cancel": Role.ADMIN}

    def get_serializer_class(self):
        return JobDetailSerializer if self.action == "retrieve" else JobSerializer

    def scope_queryset(self, queryset):
        if self.action == "retrieve":
            return queryset.prefetch_related("attempt_log")
        return queryset

    @extend_schema(request=None, responses={200: JobSerializer}, summary="Retry a failed or cancelled job")
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        job = services.job_retry(job=self.get_object(), actor=request.user)
        return Response(JobSerializer(job).data)

    @extend_schema(request=None, responses={200: JobSerializer}, summary="Cancel a pending job")
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = services.job_cancel(job=self.get_object(), actor=request.user)
        return Response(JobSerializer(job).data)
