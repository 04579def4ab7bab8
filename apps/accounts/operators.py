"""When a platform operator (``is_staff``) holds platform-wide powers through the API.

The admin lets an operator in only with a verified TOTP device (django-otp's OTPAdminSite, when
``MPANEL_ADMIN_REQUIRE_2FA`` is on). The API asks the same: a bearer session whose login passed
TOTP (``/auth/login/mfa/``), of a user who still has a confirmed TOTP device. A password-only
session of an operator is an ordinary user's, with no reach beyond their own tenants.
"""

from __future__ import annotations

from django.conf import settings
from django_otp import user_has_device

from apps.tenancy.resolution import OPERATOR_VOUCHERS

from .models import AuthToken

# The admin's factor. Recovery codes are ours, not django-otp's: the admin does not take them either.
OPERATOR_FACTORS = frozenset({"totp"})


# The tenant resolution asks this before it shows an operator every tenant (``wants_platform_view``).
@OPERATOR_VOUCHERS.register()
def is_verified_operator(user, auth) -> bool:
    if not (user is not None and user.is_authenticated and user.is_active and user.is_staff):
        return False
    if not isinstance(auth, AuthToken):
        return False  # a personal API token is one tenant's, never the platform's
    if not getattr(settings, "MPANEL_ADMIN_REQUIRE_2FA", True):
        return True  # the admin asks no second factor either
    if auth.method not in OPERATOR_FACTORS:
        return False
    # Like django-otp's session check: a device removed since the login no longer vouches for it.
    return user_has_device(user, confirmed=True)
