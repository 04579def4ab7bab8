from django.core.management.base import BaseCommand

from apps.console.groups import ensure_operator_groups


class Command(BaseCommand):
    help = "Create or update the operators' groups (support, billing, infrastructure) and their permissions."

    def handle(self, *args, **options):
        for name, count in ensure_operator_groups().items():
            self.stdout.write(f"group {name}: {count} permissions")
