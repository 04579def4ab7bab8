from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.tenancy.roles import Role
from apps.tenancy.viewsets import TenantScopedViewSet

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


class CloudPodViewSet(TenantScopedViewSet):
    """CloudPods (docs/api.md): BILLING+ read; ADMIN+ create, update, resize, suspend, resume, delete.

    Changes answer at once with the pod's new status; a job does the work on the node.
    """

    queryset = CloudPod.objects.select_related("node")
    serializer_class = CloudPodSerializer
    filterset_class = CloudPodFilter
    search_fields = ["name", "container_id", "subscription"]
    ordering_fields = ["created_at", "name", "status", "plan"]
    ordering = ["-created_at"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
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

    def get_serializer_class(self):
        return {
            "retrieve": CloudPodDetailSerializer,
            "create": CloudPodCreateSerializer,
            "update": CloudPodUpdateSerializer,
            "partial_update": CloudPodUpdateSerializer,
            "resize": ResizeSerializer,
            "plans": PlanSerializer,
            "quota": QuotaSerializer,
        }.get(self.action, CloudPodSerializer)

    def _answer(self, pod, code=status.HTTP_200_OK):
        return Response(CloudPodSerializer(pod, context=self.get_serializer_context()).data, status=code)

    def list(self, request):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(CloudPodSerializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(CloudPodDetailSerializer(self.get_object()).data)

    @extend_schema(request=CloudPodCreateSerializer, responses={201: CloudPodSerializer})
    def create(self, request):
        serializer = CloudPodCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pod = services.pod_create(tenant=self.tenant, actor=request.user, **serializer.validated_data)
        return self._answer(pod, status.HTTP_201_CREATED)

    @extend_schema(request=CloudPodUpdateSerializer, responses={200: CloudPodSerializer})
    def update(self, request, pk=None, partial=False):
        pod = self.get_object()
        serializer = CloudPodUpdateSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return self._answer(services.pod_update(pod=pod, data=serializer.validated_data, actor=request.user))

    @extend_schema(request=CloudPodUpdateSerializer, responses={200: CloudPodSerializer})
    def partial_update(self, request, pk=None):
        return self.update(request, pk, partial=True)

    @extend_schema(request=None, responses={202: CloudPodSerializer}, summary="Delete the pod (a job removes it)")
    def destroy(self, request, pk=None):
        pod = services.pod_delete(pod=self.get_object(), actor=request.user)
        return self._answer(pod, status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=ResizeSerializer, responses={202: CloudPodSerializer}, summary="Move the pod to another plan"
    )
    @action(detail=True, methods=["post"])
    def resize(self, request, pk=None):
        pod = self.get_object()
        serializer = ResizeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pod = services.pod_resize(pod=pod, plan=serializer.validated_data["plan"], actor=request.user)
        return self._answer(pod, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: CloudPodSerializer}, summary="Freeze the pod")
    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None):
        return self._answer(services.pod_suspend(pod=self.get_object(), actor=request.user), status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: CloudPodSerializer}, summary="Thaw a suspended pod")
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._answer(services.pod_resume(pod=self.get_object(), actor=request.user), status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: PlanSerializer(many=True)}, summary="The plans a pod can be created on")
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def plans(self, request):
        return Response([p.as_dict() for p in plans.plans().values()])

    @extend_schema(responses={200: QuotaSerializer}, summary="The tenant's pod quota and what it uses of it")
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def quota(self, request):
        return Response(QuotaSerializer(services.quota_usage()).data)
