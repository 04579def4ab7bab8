from django.db import models


class Role(models.TextChoices):
    """Tenant roles, each including every role below it (docs/api.md)."""

    OWNER = "OWNER", "Owner"
    ADMIN = "ADMIN", "Admin"
    BILLING = "BILLING", "Billing"
    MEMBER = "MEMBER", "Member"
    VIEWER = "VIEWER", "Viewer"

    @property
    def rank(self) -> int:
        return RANK[self.value]

    def includes(self, other: "Role | str") -> bool:
        """True when this role may do what ``other`` may do."""
        return RANK[self.value] >= RANK[Role(other).value]


RANK = {"VIEWER": 10, "MEMBER": 20, "BILLING": 30, "ADMIN": 40, "OWNER": 50}
ORDERED = sorted(Role, key=lambda r: RANK[r.value])  # VIEWER first


def lowest(*roles: "Role | str | None") -> Role | None:
    present = [Role(r) for r in roles if r]
    return min(present, key=lambda r: RANK[r.value]) if present else None
