# An event's actor is indexed only where set (the workers' and the system's events have none). The audit
# table takes a write per mutation: the new index is built CONCURRENTLY on PostgreSQL
# (apps/common/migration_operations.py) before the foreign key's own index goes.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from apps.common.migration_operations import AddIndexConcurrently


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('audit', '0003_no_tenant_only_index'),
        ('tenancy', '0003_no_redundant_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='auditevent',
            index=models.Index(condition=models.Q(('actor__isnull', False)), fields=['actor'], name='audit_event_actor_idx'),
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='actor',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
    ]
