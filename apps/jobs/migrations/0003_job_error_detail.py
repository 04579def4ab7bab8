from django.db import migrations, models


def split_errors(apps, schema_editor):
    """Jobs stored before the rule kept the whole failure in what tenants read: move it to the
    operators' field and keep the redacted text for the tenant."""
    from apps.jobs.errors import redact

    for model_name, public, detail in (("Job", "last_error", "error_detail"), ("JobAttempt", "error", "detail")):
        model = apps.get_model("jobs", model_name)
        for row in model.objects.exclude(**{public: ""}).only("pk", public).iterator():
            text = getattr(row, public)
            safe = redact(text, stored=True)
            if safe != text:
                model.objects.filter(pk=row.pk).update(**{public: safe, detail: text})


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0002_finished_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="error_detail",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="jobattempt",
            name="detail",
            field=models.TextField(blank=True),
        ),
        migrations.RunPython(split_errors, migrations.RunPython.noop),
    ]
