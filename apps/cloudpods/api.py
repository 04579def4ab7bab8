from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

from . import plans, services
from .models import CloudPod, PodStatus
from .serializers import (
    CloudPodCreateSerializer,
    CloudPodDetailSerializer,
    CloudPodSerializer,
    CloudPodUpdateSerializer,
    PlanSerializer,
    QuotaSerializer,
    ResizeSerializer,
)


class CloudPodFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=PodStatus.choices)

    class Meta:
        model = CloudPod
        fields = ["status", "plan", "node", "subscription"]


# The base generates the standard routes' schema; DELETE's summary says what a 202 means here.
@extend_schema_view(destroy=extend_schema(summary="Delete the pod (a job removes it)"))
class CloudPodViewSet(ResourceViewSet):
    """CloudPods: BILLING+ read; ADMIN+ create, update, resize, suspend, resume, delete.

    Changes answer at once with the pod's new status; a job does the work on the node.
    """

    queryset = CloudPod.objects.select_related("node")
    serializer_class = CloudPodSerializer
    detail_serializer_class = CloudPodDetailSerializer
    input_serializers = {
        "create": CloudPodCreateSerializer,
        "update": CloudPodUpdateSerializer,
        "resize": ResizeSerializer,
    }
    filterset_class = CloudPodFilter
    search_fields = ["name", "container_id", "subscription"]
    ordering_fields = ["created_at", "name", "status", "plan"]
    ordering = ["-created_at"]
    required_roles = {
        "list": Role.BILLING,
        "retrieve": Role.BILLING,
        "plans": Role.BILLING,
        "quota": Role.BILLING,
        "create": Role.ADMIN,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "destroy": Role.ADMIN,
        "resize": Role.ADMIN,
        "suspend": Role.ADMIN,
        "resume": Role.ADMIN,
    }

    def create_resource(self, data):
        return services.pod_create(tenant=self.tenant, actor=self.request.user, **data)

    def update_resource(self, obj, data):
        return services.pod_update(pod=obj, data=data, actor=self.request.user)

    def destroy_resource(self, obj):
        return services.pod_delete(pod=obj, actor=self.request.user)

    @extend_schema(
        request=ResizeSerializer, responses={202: CloudPodSerializer}, summary="Move the pod to another plan"
    )
    @action(detail=True, methods=["post"])
    def resize(self, request, pk=None):
        pod = self.get_object()  # a foreign or unknown pod is a 404 before its body is read
        pod = services.pod_resize(pod=pod, plan=self.validated()["plan"], actor=request.user)
        return self.answer(pod, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: CloudPodSerializer}, summary="Freeze the pod")
    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None):
        return self.answer(services.pod_suspend(pod=self.get_object(), actor=request.user), status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: CloudPodSerializer}, summary="Thaw a suspended pod")
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self.answer(services.pod_resume(pod=self.get_object(), actor=request.user), status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: PlanSerializer(many=True)}, summary="The plans a pod can be created on")
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def plans(self, request):
        # A list, which ``answer`` does not take: the same serializer through ``output``.
        return Response(self.output(list(plans.plans().values()), many=True, serializer=PlanSerializer))

    @extend_schema(responses={200: QuotaSerializer}, summary="The tenant's pod quota and what it uses of it")
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def quota(self, request):
        return self.answer(services.quota_usage(self.tenant), serializer=QuotaSerializer)
