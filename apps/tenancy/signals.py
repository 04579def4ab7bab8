from django.dispatch import Signal

# Sent inside the transaction that ends a membership (API or admin): membership (still loaded, about to be
# deleted), actor. The security center revokes what the member held in that tenant (personal API tokens).
member_removed = Signal()
