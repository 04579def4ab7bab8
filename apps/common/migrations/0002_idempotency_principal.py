from django.conf import settings
from django.db import migrations, models
from django.db.models import Value
from django.db.models.functions import Cast, Concat


def fill_principal(apps, schema_editor):
    # Every record so far is a staff user's.
    record = apps.get_model("common", "IdempotencyRecord")
    record.objects.update(principal=Concat(Value("user:"), Cast("user_id", models.CharField())))


class Migration(migrations.Migration):
    dependencies = [
        ("common", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="idempotencyrecord",
            name="principal",
            field=models.CharField(default="", max_length=100),
            preserve_default=False,
        ),
        migrations.RunPython(fill_principal, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="idempotencyrecord", name="uniq_idempotency_key"),
        migrations.AlterField(
            model_name="idempotencyrecord",
            name="user",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=models.deletion.CASCADE,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddConstraint(
            model_name="idempotencyrecord",
            constraint=models.UniqueConstraint(
                fields=("principal", "tenant_key", "key"), name="uniq_idempotency_principal_key"
            ),
        ),
    ]
