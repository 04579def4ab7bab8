from django.dispatch import Signal

# Sent when login issues a bearer session: user, token (AuthToken), method ("password", "totp", "recovery_code").
session_started = Signal()
