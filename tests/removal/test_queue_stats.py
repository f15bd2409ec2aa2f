"""Queue depth and the oldest waiting job's age, for autoscaling."""

import io
import json
from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone

from removal import selectors
from removal.models import RemovalJob
from tests.job_factory import completed_job, submitted_job


def test_it_reports_waiting_jobs_their_oldest_age_and_each_queue(transactional_db, account):
    empty = selectors.queue_stats()
    assert empty["jobs"] == {"pending": 0, "processing": 0, "oldest_pending_seconds": 0.0}
    assert set(empty["queues"]) == {"revid", "webhooks", "housekeeping"}

    oldest = submitted_job(account)
    submitted_job(account)
    running = submitted_job(account)
    assert running.mark_processing()
    completed_job(account)
    RemovalJob.objects.filter(pk=oldest.pk).update(
        created_at=timezone.now() - timedelta(seconds=90)
    )

    out = io.StringIO()
    call_command("queue_stats", stdout=out)
    stats = json.loads(out.getvalue())
    assert stats["jobs"]["pending"] == 2
    assert stats["jobs"]["processing"] == 1
    assert 90 <= stats["jobs"]["oldest_pending_seconds"] < 150
    # Every submitted job's task waits in the removal queue (no worker runs).
    assert stats["queues"]["revid"] == 4
    assert stats["queues"]["housekeeping"] == 0
