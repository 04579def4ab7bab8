"""The file manager: ``/api/v1/hosting/files/{website id}/…`` (roles in docs/modules/websites-and-files.md).

``GET /hosting/files/`` lists the websites whose files can be browsed; ``GET /{id}/?path=`` lists
a directory; ``stat``, ``read`` and ``download`` read; ``upload``, ``write``, ``mkdir``, ``rename``,
``copy``, ``delete``, ``chmod``, ``compress`` and ``extract`` change files (ADMIN+, or a guardian
grant ``websites.manage_website_files`` on that website).
"""

from urllib.parse import quote

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser

from apps.common.parsers import FormParser, JSONParser
from apps.tenancy.permissions import Grant
from apps.tenancy.roles import Role
from apps.tenancy.viewsets import ResourceViewSet
from apps.websites.models import Website, WebsiteStatus

from . import serializers as s
from . import services

WRITE = Grant(Role.ADMIN, "websites.manage_website_files")
PATH = OpenApiParameter("path", str, description="relative to the website's root; empty for the root")
READ_LIMIT = 2 * 1024 * 1024


class FileManagerViewSet(ResourceViewSet):
    """A website's files: list, read and download MEMBER+; changes ADMIN+ or a guardian grant
    ``websites.manage_website_files`` on that website."""

    queryset = Website.objects.exclude(status__in=[WebsiteStatus.DELETING, WebsiteStatus.DELETED]).select_related(
        "node"
    )
    serializer_class = s.ListingSerializer
    output_serializers = {"list": s.FileSiteSerializer}
    summaries = {"list": "Websites whose files can be browsed"}
    input_serializers = {
        "upload": s.UploadSerializer,
        "write": s.WriteSerializer,
        "mkdir": s.RequiredPathSerializer,
        "rename": s.MoveSerializer,
        "copy": s.MoveSerializer,
        "delete_entry": s.RequiredPathSerializer,
        "chmod": s.ChmodSerializer,
        "compress": s.CompressSerializer,
        "extract": s.ExtractSerializer,
    }
    ordering = ["-created_at"]
    ordering_fields = ["created_at", "primary_domain"]
    search_fields = ["primary_domain"]
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    # The editor sends whole files as JSON (content up to 16 MiB of text, escaped).
    max_body_bytes = settings.FILES_MAX_UPLOAD_BYTES
    required_roles = {
        "list": Role.MEMBER,
        "retrieve": Role.MEMBER,
        "stat": Role.MEMBER,
        "read": Role.MEMBER,
        "download": Role.MEMBER,
        "upload": WRITE,
        "write": WRITE,
        "mkdir": WRITE,
        "rename": WRITE,
        "copy": WRITE,
        "delete_entry": WRITE,
        "chmod": WRITE,
        "compress": WRITE,
        "extract": WRITE,
    }

    def _path(self, serializer_class=s.RequiredPathSerializer) -> str:
        """The ``path`` query parameter."""
        return self.validated(serializer_class, data=self.request.query_params)["path"]

    @extend_schema(parameters=[PATH], responses={200: s.ListingSerializer}, summary="List a directory")
    def retrieve(self, request, *args, **kwargs):
        site = self.get_object()
        listing = services.file_list(website=site, path=self._path(s.PathQuerySerializer))
        return self.answer({"website": site.pk, **listing})

    @extend_schema(parameters=[PATH], responses={200: s.EntrySerializer})
    @action(detail=True, methods=["get"])
    def stat(self, request, pk=None):
        site = self.get_object()
        return self.answer(services.file_stat(website=site, path=self._path()), serializer=s.EntrySerializer)

    @extend_schema(
        parameters=[PATH],
        responses={200: s.FileContentSerializer},
        summary=f"A UTF-8 text file's content (up to {READ_LIMIT} bytes)",
    )
    @action(detail=True, methods=["get"])
    def read(self, request, pk=None):
        site = self.get_object()
        content = services.file_read(website=site, path=self._path(), max_bytes=READ_LIMIT)
        return self.answer(content, serializer=s.FileContentSerializer)

    @extend_schema(parameters=[PATH], responses={(200, "application/octet-stream"): bytes}, summary="Download")
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        site = self.get_object()
        entry, chunks = services.file_chunks(website=site, path=self._path())
        response = StreamingHttpResponse(chunks, content_type="application/octet-stream")
        response["Content-Length"] = str(entry["size"])
        response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(entry['name'])}"
        return response

    def _entry(self, entry: dict, code: int = status.HTTP_200_OK):
        return self.answer(entry, code, serializer=s.EntrySerializer)

    @extend_schema(request={"multipart/form-data": s.UploadSerializer}, responses={201: s.EntrySerializer})
    @action(detail=True, methods=["post"])
    def upload(self, request, pk=None):
        site = self.get_object()
        data = self.validated()
        entry = services.file_upload(website=site, directory=data["path"], upload=data["file"], actor=request.user)
        return self._entry(entry, status.HTTP_201_CREATED)

    @extend_schema(request=s.WriteSerializer, responses={200: s.EntrySerializer}, summary="Write a text file")
    @action(detail=True, methods=["post"])
    def write(self, request, pk=None):
        site = self.get_object()
        data = self.validated()
        content = data["content"].encode("utf-8")
        return self._entry(services.file_write(website=site, path=data["path"], content=content, actor=request.user))

    @extend_schema(request=s.RequiredPathSerializer, responses={201: s.EntrySerializer})
    @action(detail=True, methods=["post"])
    def mkdir(self, request, pk=None):
        site = self.get_object()
        entry = services.file_mkdir(website=site, path=self.validated()["path"], actor=request.user)
        return self._entry(entry, status.HTTP_201_CREATED)

    @extend_schema(request=s.MoveSerializer, responses={200: s.EntrySerializer}, summary="Rename or move")
    @action(detail=True, methods=["post"])
    def rename(self, request, pk=None):
        site = self.get_object()
        return self._entry(services.file_move(website=site, actor=request.user, **self.validated()))

    @extend_schema(request=s.MoveSerializer, responses={201: s.EntrySerializer})
    @action(detail=True, methods=["post"])
    def copy(self, request, pk=None):
        site = self.get_object()
        entry = services.file_copy(website=site, actor=request.user, **self.validated())
        return self._entry(entry, status.HTTP_201_CREATED)

    @extend_schema(
        request=s.RequiredPathSerializer, responses={200: s.DeletedSerializer}, summary="Delete a file or a directory"
    )
    # Not named `delete`: a viewset method of that name also answers HTTP DELETE on every route
    # (the list route then crashed in get_object; the fuzz run found it).
    @action(detail=True, methods=["post"], url_path="delete", url_name="delete")
    def delete_entry(self, request, pk=None):
        site = self.get_object()
        result = services.file_delete(website=site, path=self.validated()["path"], actor=request.user)
        return self.answer(result, serializer=s.DeletedSerializer)

    @extend_schema(request=s.ChmodSerializer, responses={200: s.EntrySerializer})
    @action(detail=True, methods=["post"])
    def chmod(self, request, pk=None):
        site = self.get_object()
        return self._entry(services.file_chmod(website=site, actor=request.user, **self.validated()))

    @extend_schema(request=s.CompressSerializer, responses={201: s.EntrySerializer})
    @action(detail=True, methods=["post"])
    def compress(self, request, pk=None):
        site = self.get_object()
        entry = services.file_compress(website=site, actor=request.user, **self.validated())
        return self._entry(entry, status.HTTP_201_CREATED)

    @extend_schema(request=s.ExtractSerializer, responses={200: s.ExtractedSerializer}, summary="Unpack an archive")
    @action(detail=True, methods=["post"])
    def extract(self, request, pk=None):
        site = self.get_object()
        result = services.file_extract(website=site, actor=request.user, **self.validated())
        return self.answer(result, serializer=s.ExtractedSerializer)
