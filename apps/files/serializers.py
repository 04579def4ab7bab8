from rest_framework import serializers

from apps.common.serializers import Serializer

MAX_PATH = 4096  # the node refuses anything over its own, stricter limit with a clear message


class PathField(serializers.CharField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", MAX_PATH)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


class PathQuerySerializer(Serializer):
    path = PathField(required=False, allow_blank=True, default="")


class RequiredPathSerializer(Serializer):
    path = PathField()


class WriteSerializer(Serializer):
    path = PathField()
    content = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=16 * 1024 * 1024)


class UploadSerializer(Serializer):
    path = PathField(required=False, allow_blank=True, default="", help_text="the directory to upload into")
    file = serializers.FileField()


class MoveSerializer(Serializer):
    source = PathField()
    target = PathField()


class ChmodSerializer(Serializer):
    path = PathField()
    mode = serializers.RegexField(r"^0?[0-7]{3}$", help_text="octal, e.g. 0644")


class CompressSerializer(Serializer):
    paths = serializers.ListField(child=PathField(), min_length=1, max_length=1000)
    target = PathField()
    format = serializers.ChoiceField(choices=["zip", "tar.gz"], default="zip")


class ExtractSerializer(Serializer):
    archive = PathField()
    target = PathField(required=False, allow_blank=True, default="")


class EntrySerializer(Serializer):
    name = serializers.CharField()
    path = serializers.CharField()
    type = serializers.CharField(help_text="file, dir or link")
    size = serializers.IntegerField()
    mode = serializers.CharField()
    modified = serializers.FloatField()


class ListingSerializer(Serializer):
    website = serializers.UUIDField()
    path = serializers.CharField()
    entries = EntrySerializer(many=True)


class FileSiteSerializer(Serializer):
    id = serializers.UUIDField()
    primary_domain = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()


class DeletedSerializer(Serializer):
    """The answer of a delete (documentation of the response body)."""

    path = serializers.CharField()
    deleted = serializers.BooleanField()


class ExtractedSerializer(Serializer):
    """The answer of an extract: how many entries were unpacked, and where."""

    extracted = serializers.IntegerField()
    target = serializers.CharField()


class FileContentSerializer(Serializer):
    """The answer of a read: a UTF-8 text file's content."""

    path = serializers.CharField()
    size = serializers.IntegerField()
    content = serializers.CharField(allow_blank=True, trim_whitespace=False)
