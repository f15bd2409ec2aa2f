"""A worker killed mid-job: the job is redone or failed and refunded, never stuck.

A real ``manage.py qcluster`` takes the job from the ORM broker; the test
kills its whole process group with SIGKILL while the job is processing,
then starts another worker. django-q2 redelivers the task once ``retry``
seconds have passed, and the new worker may claim a job whose
``started_at`` is older than REMOVAL_JOB_TIMEOUT + REMOVAL_STALE_GRACE;
failing that, the ``fail_stale_jobs`` schedule fails and refunds it.
"""

import signal

import pytest

from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from removal.models import RemovalJob
from tests.conftest import wait_for
from tests.job_factory import submitted_job

pytestmark = [pytest.mark.e2e, pytest.mark.model]

# Short enough for a test; u2net loads inside the job (no warm models), so
# the job spends a second or more in "processing": time to kill it there.
WORKER_ENV = {"REMOVAL_JOB_TIMEOUT": "8", "REMOVAL_STALE_GRACE": "1", "WARM_MODELS": ""}
BOUND_SECONDS = 90


def status_of(job_id) -> str:
    return RemovalJob.objects.values_list("status", flat=True).get(pk=job_id)


def test_a_job_whose_worker_is_killed_is_redone_or_refunded_never_left_processing(
    start_worker, account
):
    job = submitted_job(account, model="u2net")
    first = start_worker(**WORKER_ENV)
    wait_for(
        lambda: status_of(job.id) == "processing",
        timeout=60,
        interval=0.05,
        message="the worker never picked the job up",
    )
    first.kill(signal.SIGKILL)
    first.process.wait(timeout=10)
    assert status_of(job.id) == "processing"  # killed mid-job, nothing cleaned up

    second = start_worker(**WORKER_ENV)
    wait_for(
        lambda: status_of(job.id) in ("completed", "failed"),
        timeout=BOUND_SECONDS,
        interval=0.5,
        message=f"job still {status_of(job.id)} after {BOUND_SECONDS}s:\n{second.log()[-3000:]}",
    )

    job.refresh_from_db()
    kinds = sorted(LedgerEntry.objects.filter(job=job).values_list("kind", flat=True))
    if job.status == RemovalJob.Status.COMPLETED:
        assert job.attempts >= 2  # redelivered and claimed again
        assert kinds == ["charge"]
        assert job.output_file.storage.exists(job.output_file.name)
    else:
        assert kinds == ["charge", "refund"], job.error
        assert job.error
    account.refresh_from_db()
    assert account.credit_balance == ledger_sum(account=account)
