from django.core.exceptions import ValidationError

from .policy import min_password_length_for


class TenantPolicyPasswordValidator:
    """The longest minimum password length among the policies of the user's tenants.

    Listed in AUTH_PASSWORD_VALIDATORS, so every way to set a password (security center,
    dj-rest-auth change and reset, admin) applies it.
    """

    def validate(self, password, user=None):
        if user is None or getattr(user, "pk", None) is None:
            return
        minimum = min_password_length_for(user)
        if len(password or "") < minimum:
            raise ValidationError(
                f"Your tenant's policy requires at least {minimum} characters.",
                code="password_too_short_for_policy",
                params={"min_length": minimum},
            )

    def get_help_text(self):
        return "Your tenants' security policies may require a longer password."
