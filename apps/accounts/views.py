from allauth.account import app_settings as allauth_settings
from dj_rest_auth.registration.views import RegisterView as BaseRegisterView
from dj_rest_auth.registration.views import VerifyEmailView as BaseVerifyEmailView
from dj_rest_auth.views import PasswordChangeView as BasePasswordChangeView
from dj_rest_auth.views import PasswordResetConfirmView as BasePasswordResetConfirmView
from dj_rest_auth.views import PasswordResetView as BasePasswordResetView
from django.conf import settings
from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.common.throttling import DynamicScopedRateThrottle, EmailRateThrottle

from . import services
from .serializers import (
    DetailSerializer,
    LoginSerializer,
    TokenResponseSerializer,
    UserSerializer,
    VerifyEmailSerializer,
)

INVALID_CREDENTIALS = "Unable to log in with provided credentials."


class LoginView(APIView):
    """Email and password in, a bearer token out.

    An unknown email, a wrong password and an inactive account all get the same answer
    (Django's ModelBackend hashes a dummy password for unknown users, so timing matches too).
    Repeated failures lock the account and the address out (django-axes) with 429.
    """

    permission_classes = [permissions.AllowAny]
    authentication_classes: list = []
    throttle_classes = [DynamicScopedRateThrottle]
    throttle_scope = "login"
    serializer_class = LoginSerializer

    @extend_schema(
        request=LoginSerializer,
        responses={
            200: TokenResponseSerializer,
            400: OpenApiResponse(description="Invalid credentials"),
            429: OpenApiResponse(description="Too many attempts"),
        },
        summary="Log in with email and password",
    )
    def post(self, request):
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        email = serializer.validated_data["email"].lower()
        password = serializer.validated_data["password"]
        django_request = request._request
        user = authenticate(request=django_request, email=email, password=password)
        if getattr(django_request, "axes_locked_out", False):
            retry_after = int(settings.AXES_COOLOFF_TIME.total_seconds())
            return Response(
                {"detail": "Too many failed login attempts. Try again later.", "code": "locked_out"},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(retry_after)},
            )
        if user is None or not user.is_active:
            return Response({"non_field_errors": [INVALID_CREDENTIALS]}, status=status.HTTP_400_BAD_REQUEST)
        return Response(services.login_answer(user, request), status=status.HTTP_200_OK)


class LogoutView(APIView):
    """Revokes the token that made this request; it is refused from then on."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses={200: DetailSerializer}, summary="Log out (revoke this token)")
    def post(self, request):
        services.logout(user=request.user, token=request.auth)
        return Response({"detail": "Successfully logged out."})


class RegisterView(BaseRegisterView):
    """Registration answers 201 with the new user; email verification is optional by default."""

    token_model = None

    @extend_schema(responses={201: UserSerializer}, summary="Register a new user")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def get_response_data(self, user):
        data = UserSerializer(user).data
        if allauth_settings.EMAIL_VERIFICATION == allauth_settings.EmailVerificationMethod.MANDATORY:
            data["detail"] = "Verification e-mail sent."
        return data

    def perform_create(self, serializer):
        user = super().perform_create(serializer)
        services.registered(user)
        return user


class PasswordChangeView(BasePasswordChangeView):
    """dj-rest-auth's, throttled: a stolen session must not be a free oracle for the old password."""

    throttle_classes = [DynamicScopedRateThrottle]
    throttle_scope = "password"

    @extend_schema(responses={200: DetailSerializer}, summary="Change my password")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class PasswordResetView(BasePasswordResetView):
    """dj-rest-auth's, throttled per address and per email: no mail bombing through our reset emails."""

    throttle_classes = [DynamicScopedRateThrottle, EmailRateThrottle]
    throttle_scope = "password"

    @extend_schema(responses={200: DetailSerializer}, summary="Email me a password reset link")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class PasswordResetConfirmView(BasePasswordResetConfirmView):
    throttle_classes = [DynamicScopedRateThrottle]
    throttle_scope = "password"

    @extend_schema(responses={200: DetailSerializer}, summary="Set a new password from a reset link")
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class VerifyEmailView(BaseVerifyEmailView):
    """dj-rest-auth's, with its body held to its documented type (it names its serializer itself)."""

    def get_serializer(self, *args, **kwargs):
        return VerifyEmailSerializer(*args, **kwargs)

    @extend_schema(
        request=VerifyEmailSerializer,
        responses={200: DetailSerializer},
        summary="Confirm my email address with the key sent to it",
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)
