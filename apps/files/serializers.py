from rest_framework import serializers

MAX_PATH = 4096  # the node refuses anything over its own, stricter limit with a clear message


class PathField(serializers.CharField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", MAX_PATH)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)


class PathQuerySerializer(serializers.Serializer):
    path = PathField(required=False, allow_blank=True, default="")


class RequiredPathSerializer(serializers.Serializer):
    path = PathField()


class WriteSerializer(serializers.Serializer):
    path = PathField()
    content = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=16 * 1024 * 1024)


class UploadSerializer(serializers.Serializer):
    path = PathField(required=False, allow_blank=True, default="", help_text="the directory to upload into")
    file = serializers.FileField()


class MoveSerializer(serializers.Serializer):
    source = PathField()
    target = PathField()


class ChmodSerializer(serializers.Serializer):
    path = PathField()
    mode = serializers.RegexField(r"^0?[0-7]{3}$", help_text="octal, e.g. 0644")


class CompressSerializer(serializers.Serializer):
    paths = serializers.ListField(child=PathField(), min_length=1, max_length=1000)
    target = PathField()
    format = serializers.ChoiceField(choices=["zip", "tar.gz"], default="zip")


class ExtractSerializer(serializers.Serializer):
    archive = PathField()
    target = PathField(required=False, allow_blank=True, default="")


class EntrySerializer(serializers.Serializer):
    name = serializers.CharField()
    path = serializers.CharField()
    type = serializers.CharField(help_text="file, dir or link")
    size = serializers.IntegerField()
    mode = serializers.CharField()
    modified = serializers.FloatField()


class ListingSerializer(serializers.Serializer):
    website = serializers.UUIDField()
    path = serializers.CharField()
    entries = EntrySerializer(many=True)


class FileSiteSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    primary_domain = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()


class DeletedSerializer(serializers.Serializer):
    """The answer of a delete (documentation of the response body)."""

    path = serializers.CharField()
    deleted = serializers.BooleanField()


class ExtractedSerializer(serializers.Serializer):
    """The answer of an extract: how many entries were unpacked, and where."""

    extracted = serializers.IntegerField()
    target = serializers.CharField()
