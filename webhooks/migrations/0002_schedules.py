"""The sweep that finds lost or overdue webhook attempts, run by the
webhook cluster's scheduler (its schedules carry cluster="webhooks")."""

from django.db import migrations

NAME = "revid: webhook sweep"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=NAME,
        defaults={
            "func": "webhooks.tasks.enqueue_due_deliveries",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
            "cluster": "webhooks",
        },
    )


def delete_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0001_initial"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
