from dj_rest_auth.registration.serializers import RegisterSerializer as BaseRegisterSerializer
from dj_rest_auth.registration.serializers import VerifyEmailSerializer as BaseVerifyEmailSerializer
from dj_rest_auth.serializers import PasswordChangeSerializer as BasePasswordChangeSerializer
from dj_rest_auth.serializers import PasswordResetConfirmSerializer as BasePasswordResetConfirmSerializer
from dj_rest_auth.serializers import PasswordResetSerializer as BasePasswordResetSerializer
from django.contrib.auth import get_user_model
from rest_framework import serializers

from apps.common.serializers import ModelSerializer, Serializer, StrictJSONMixin

User = get_user_model()


class UserSerializer(ModelSerializer):
    created_at = serializers.DateTimeField(source="date_joined", read_only=True)

    class Meta:
        model = User
        fields = ["id", "email", "full_name", "created_at"]
        read_only_fields = ["id", "email", "created_at"]


class LoginSerializer(Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False, max_length=4096)


class TokenResponseSerializer(Serializer):
    key = serializers.CharField()


class RegisterSerializer(StrictJSONMixin, BaseRegisterSerializer):
    username = None
    full_name = serializers.CharField(required=False, allow_blank=True, max_length=200)

    def validate_email(self, email):
        email = super().validate_email(email)
        # allauth only knows the addresses it recorded itself; users made elsewhere count too.
        if User.objects.filter(email__iexact=email).exists():
            raise serializers.ValidationError("A user is already registered with this e-mail address.")
        return email.lower()

    def custom_signup(self, request, user):
        name = self.validated_data.get("full_name", "")
        if name:
            user.full_name = name
            user.save(update_fields=["full_name"])


class DetailSerializer(Serializer):
    detail = serializers.CharField()


# dj-rest-auth's own bodies, held to their documented JSON types like ours (REST_AUTH settings).
class PasswordChangeSerializer(StrictJSONMixin, BasePasswordChangeSerializer):
    pass


class PasswordResetSerializer(StrictJSONMixin, BasePasswordResetSerializer):
    pass


class PasswordResetConfirmSerializer(StrictJSONMixin, BasePasswordResetConfirmSerializer):
    pass


class VerifyEmailSerializer(StrictJSONMixin, BaseVerifyEmailSerializer):
    pass
