# The job row's status indexes become partial (open jobs, finished jobs) and its creator is indexed only
# where set. Built and dropped CONCURRENTLY on PostgreSQL (apps/common/migration_operations.py), the new
# ones before the old go: the jobs table takes writes all the while.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from apps.common.migration_operations import AddIndexConcurrently, RemoveIndexConcurrently


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('jobs', '0004_no_redundant_indexes'),
        ('tenancy', '0003_no_redundant_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='job',
            index=models.Index(condition=models.Q(('status__in', ('PENDING', 'RUNNING'))), fields=['status', 'run_after'], name='jobs_job_open_idx'),
        ),
        AddIndexConcurrently(
            model_name='job',
            index=models.Index(condition=models.Q(('status__in', ('SUCCEEDED', 'FAILED', 'CANCELLED'))), fields=['status', 'finished_at'], name='jobs_job_finished_idx'),
        ),
        AddIndexConcurrently(
            model_name='job',
            index=models.Index(condition=models.Q(('created_by__isnull', False)), fields=['created_by'], name='jobs_job_created_by_idx'),
        ),
        migrations.AlterField(
            model_name='job',
            name='created_by',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        RemoveIndexConcurrently(
            model_name='job',
            name='jobs_job_status_babf0b_idx',
        ),
        RemoveIndexConcurrently(
            model_name='job',
            name='jobs_job_status_d700c4_idx',
        ),
    ]
