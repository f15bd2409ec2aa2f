"""The housekeeping schedules run on their own cluster (a queue of their own),
so a backlog of removals never delays the reaper or the expiry; an hourly
sweep deletes stored files that no job names."""

from django.db import migrations

HOUSEKEEPING = "housekeeping"
SCHEDULES = [
    # (name, func, minutes)
    ("revid: fail stale jobs", "removal.tasks.fail_stale_jobs", 1),
    ("revid: expire job files", "removal.tasks.expire_job_files", 10),
    ("revid: delete orphaned files", "removal.tasks.delete_orphaned_files", 60),
]


def move_to_housekeeping(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, func, minutes in SCHEDULES:
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": "I",
                "minutes": minutes,
                "repeats": -1,
                "cluster": HOUSEKEEPING,
            },
        )


def move_back(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name="revid: delete orphaned files").delete()
    Schedule.objects.filter(name__in=[name for name, _, _ in SCHEDULES]).update(cluster=None)


class Migration(migrations.Migration):
    dependencies = [
        ("removal", "0006_batches"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(move_to_housekeeping, move_back)]
