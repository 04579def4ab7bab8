"""/api/v1/enterprise/backups: repositories, policies, snapshots (``?resource=<id>``), backup now,
restore, single file download, restores and drills.

Roles: MEMBER+ read, ADMIN+ write. A repository's password is never answered by a list or a
detail: ``export-password`` answers it to an ADMIN+ who re-authenticates (audited). Another
tenant's repository, snapshot or download is a 404; a restore into another tenant's resource is a
400 (the target is looked up in this tenant only).
"""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action

from apps.security.serializers import ReauthSerializer
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet

from . import services
from .models import BackupPolicy, BackupRepository, Drill, Restore, Snapshot, SnapshotStatus
from .serializers import (
    BackupDrillSerializer,
    BackupNowSerializer,
    BackupPolicySerializer,
    BackupPolicyUpdateSerializer,
    BackupRepositorySerializer,
    BackupRestoreSerializer,
    BackupSnapshotSerializer,
    DownloadQuerySerializer,
    DrillStartSerializer,
    RepositoryDeleteSerializer,
    RepositoryPasswordSerializer,
    RepositoryUpdateSerializer,
    RestoreInputSerializer,
    SnapshotQuerySerializer,
)

READ = {"list": Role.MEMBER, "retrieve": Role.MEMBER}
WRITE = {"create": Role.ADMIN, "update": Role.ADMIN, "partial_update": Role.ADMIN, "destroy": Role.ADMIN}
DELETE_SUMMARY = 'Delete the repository and every snapshot in it (a job): send {"confirm": "<name>"}'


@extend_schema_view(destroy=extend_schema(request=RepositoryDeleteSerializer, summary=DELETE_SUMMARY))
class BackupRepositoryViewSet(ResourceViewSet):
    """Restic repositories on backup nodes; the password is generated and kept encrypted."""

    queryset = BackupRepository.objects.select_related("node")
    serializer_class = BackupRepositorySerializer
    input_serializers = {"create": BackupRepositorySerializer, "update": RepositoryUpdateSerializer,
                         "export_password": ReauthSerializer}  # fmt: skip
    update_methods = {"patch": True}
    filterset_fields = ["node", "status", "backend"]
    search_fields = ["name"]
    ordering_fields = ["name", "size_bytes", "created_at"]
    ordering = ["name"]
    required_roles = {**READ, "create": Role.ADMIN, "partial_update": Role.ADMIN, "destroy": Role.ADMIN,
                      "check": Role.ADMIN, "test": Role.ADMIN, "export_password": Role.ADMIN}  # fmt: skip
    idempotency_secret_fields = ("password", "sftp_private_key", "s3_secret_key")

    def create_resource(self, data):
        return services.repository_create(tenant=self.tenant, actor=self.request.user, **data)

    def update_resource(self, obj, data):
        return services.repository_update(repository=obj, data=data, actor=self.request.user)

    @extend_schema(request=None, responses={202: BackupRepositorySerializer},
                   summary="Test the connection: its node opens it (restic cat config; a job)")  # fmt: skip
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        repo = self.get_object()
        services.repository_test(repository=repo, actor=request.user)
        return self.answer(self.current(repo), status.HTTP_202_ACCEPTED)

    def destroy_resource(self, obj):
        confirm = self.request.data.get("confirm") if hasattr(self.request.data, "get") else None
        confirm = confirm if confirm is not None else self.request.query_params.get("confirm")
        return services.repository_delete(repository=obj, confirm=confirm, actor=self.request.user)

    @extend_schema(request=None, responses={202: BackupRepositorySerializer},
                   summary="Check the repository now (restic check, the next twelfth of the data; a job)")  # fmt: skip
    @action(detail=True, methods=["post"])
    def check(self, request, pk=None):
        repo = self.get_object()
        services.repository_check(repository=repo, actor=request.user)
        return self.answer(self.current(repo), status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: RepositoryPasswordSerializer},
                   summary="The repository's password, to restore without mPanel (re-authenticate)")  # fmt: skip
    @action(detail=True, methods=["post"], url_path="export-password")
    def export_password(self, request, pk=None):
        repo = self.get_object()
        access = services.repository_export_password(repository=repo, user=request.user, **self.validated())
        body = {"repository": repo.pk, "restic_repository": repo.location, "backend": repo.backend, **access}
        return self.answer(body, serializer=RepositoryPasswordSerializer)


class BackupPolicyViewSet(ResourceViewSet):
    """What is backed up, when, how long it is kept, and how often a drill proves it restores."""

    queryset = BackupPolicy.objects.select_related("repository")
    serializer_class = BackupPolicySerializer
    input_serializers = {"create": BackupPolicySerializer, "update": BackupPolicyUpdateSerializer}
    update_methods = {"patch": True}
    destroy_answers_object = False
    filterset_fields = ["repository", "enabled", "last_run_status", "last_drill_status"]
    search_fields = ["name"]
    ordering_fields = ["name", "last_run_at", "last_drill_at", "created_at"]
    ordering = ["name"]
    required_roles = {**READ, **WRITE, "run": Role.ADMIN, "drill": Role.ADMIN}
    output_serializers = {"run": BackupSnapshotSerializer, "drill": BackupDrillSerializer}

    def create_resource(self, data):
        return services.policy_create(tenant=self.tenant, actor=self.request.user, **data)

    def update_resource(self, obj, data):
        return services.policy_update(policy=obj, data=data, actor=self.request.user)

    def destroy_resource(self, obj):
        services.policy_delete(policy=obj, actor=self.request.user)

    @extend_schema(request=None, responses={202: BackupSnapshotSerializer(many=True)},
                   summary="Back up every resource of the policy now (a job each)")  # fmt: skip
    @action(detail=True, methods=["post"])
    def run(self, request, pk=None):
        made = services.policy_run(policy=self.get_object(), actor=request.user)
        return self.answer(made, status.HTTP_202_ACCEPTED, many=True)

    @extend_schema(request=None, responses={202: BackupDrillSerializer},
                   summary="Start a restore drill of the policy now (a job)")  # fmt: skip
    @action(detail=True, methods=["post"])
    def drill(self, request, pk=None):
        return self.answer(services.drill_start(policy=self.get_object(), actor=request.user), status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("resource", OpenApiTypes.UUID, description="Only this resource's")]
    ),
    destroy=extend_schema(summary="Forget the snapshot (restic forget --prune; a job)"),
)
class SnapshotViewSet(ResourceViewSet):
    """Snapshots per resource: time, size, files, and the policy that made them. POST backs one
    resource up now."""

    queryset = Snapshot.objects.select_related("repository")
    serializer_class = BackupSnapshotSerializer
    input_serializers = {"create": BackupNowSerializer, "restore": RestoreInputSerializer}
    output_serializers = {"restore": BackupRestoreSerializer}
    filterset_fields = ["repository", "policy", "set_id", "resource_kind", "status", "reason"]
    search_fields = ["resource_label", "restic_id"]
    ordering_fields = ["created_at", "taken_at", "size_bytes"]
    ordering = ["-created_at"]
    required_roles = {**READ, "create": Role.ADMIN, "destroy": Role.ADMIN, "restore": Role.ADMIN,
                      "download": Role.MEMBER}  # fmt: skip

    def scope_queryset(self, queryset):
        if self.action == "list" and "resource" in self.request.query_params:
            query = self.validated(SnapshotQuerySerializer, data=self.request.query_params)
            queryset = queryset.filter(resource_id=query["resource"])
        if self.action == "list" and "status" not in self.request.query_params:
            queryset = queryset.exclude(status=SnapshotStatus.FORGOTTEN)
        return queryset

    def create_resource(self, data):
        return services.snapshot_create(tenant=self.tenant, actor=self.request.user, **data)

    def destroy_resource(self, obj):
        return services.snapshot_forget(snapshot=obj, actor=self.request.user)

    @extend_schema(responses={202: BackupRestoreSerializer},
                   summary="Restore this snapshot in place, into another resource or a new one (a job)")  # fmt: skip
    @action(detail=True, methods=["post"])
    def restore(self, request, pk=None):
        data = self.validated()
        made = services.restore_create(snapshot=self.get_object(), target_id=data.get("target"), actor=request.user,
                                       hostname=data.get("hostname", ""), suffix=data.get("suffix", ""),
                                       name=data.get("name", ""), password=data.get("password", ""))  # fmt: skip
        return self.answer(made, status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[OpenApiParameter("path", OpenApiTypes.STR, required=True, description="The file in the snapshot")],
        responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The file")},
        summary="Download one file of the snapshot (streamed, size-limited)",
    )
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        snap = self.get_object()
        path = self.validated(DownloadQuerySerializer, data=request.query_params)["path"]
        info = services.download_plan(snapshot=snap, path=path)
        response = StreamingHttpResponse(services.download_chunks(snapshot=snap, path=info["path"], size=info["size"]),
                                         content_type="application/octet-stream")  # fmt: skip
        name = info["path"].rsplit("/", 1)[-1].replace('"', "")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["Content-Length"] = str(info["size"])
        return response


class RestoreViewSet(ResourceViewSet):
    """Restores and their progress (``step``)."""

    queryset = Restore.objects.select_related("snapshot")
    serializer_class = BackupRestoreSerializer
    filterset_fields = ["status", "target_kind", "target_id"]
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]
    required_roles = READ


class DrillViewSet(ResourceViewSet):
    """Restore drills and their results; POST starts one for a policy."""

    queryset = Drill.objects.all()
    serializer_class = BackupDrillSerializer
    input_serializers = {"create": DrillStartSerializer}
    filterset_fields = ["policy", "status"]
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]
    required_roles = {**READ, "create": Role.ADMIN}

    def create_resource(self, data):
        return services.drill_start(policy=data["policy"], actor=self.request.user)
