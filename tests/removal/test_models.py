"""The job's own rules: which of its files may still be served."""

from datetime import timedelta

import pytest
from django.utils import timezone

from removal.models import RemovalJob
from tests.job_factory import completed_job, failed_job, submitted_job

pytestmark = [pytest.mark.django_db, pytest.mark.weights]


def test_a_completed_job_has_a_live_output_and_input(account):
    job = completed_job(account)
    assert job.has_output and job.has_live_output and job.has_live_input


def test_a_job_past_its_expiry_serves_nothing_even_before_the_files_are_deleted(account):
    job = completed_job(account)
    RemovalJob.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    job.refresh_from_db()
    assert job.files_deleted_at is None and job.input_file.name and job.output_file.name
    assert job.has_output
    assert not job.has_live_output
    assert not job.has_live_input


def test_a_failed_job_has_no_output_but_keeps_its_input_until_expiry(account):
    job = failed_job(account)
    assert not job.has_output and not job.has_live_output
    assert job.has_live_input


def test_a_pending_job_has_no_output(account):
    job = submitted_job(account)
    assert not job.has_output and job.has_live_input
