"""Dead schema out: `Chunk.core` (never written), the `queued` chunk status (chunks go from
pending to running under a lease since 0004; any row left queued by an older engine would
never be claimed, so it goes back to pending) and two indexes that are prefixes of the
(…, -created_at, -id) ones added in 0003."""

from django.db import migrations, models


def queued_chunks_to_pending(apps, schema_editor):
    Chunk = apps.get_model("jobs", "Chunk")
    Chunk.objects.filter(status="queued").update(status="pending")


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0005_scaling_study"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="job",
            name="job_owner_created",
        ),
        migrations.RemoveIndex(
            model_name="job",
            name="job_created",
        ),
        migrations.RemoveField(
            model_name="chunk",
            name="core",
        ),
        migrations.RunPython(queued_chunks_to_pending, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="chunk",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("running", "Running"),
                    ("done", "Done"),
                    ("failed", "Failed"),
                    ("cancelled", "Cancelled"),
                ],
                default="pending",
                max_length=16,
            ),
        ),
    ]
