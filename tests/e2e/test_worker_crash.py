"""A worker killed mid-job: the job is redone or failed and refunded, never stuck.

A real ``manage.py qcluster`` takes the job from the ORM broker; the test
kills its whole process group with SIGKILL while the job is processing,
then starts another worker. django-q2 redelivers the task once ``retry``
seconds have passed, and the new worker may claim a job whose
``started_at`` is older than REMOVAL_JOB_TIMEOUT + REMOVAL_STALE_GRACE;
failing that, the ``fail_stale_jobs`` schedule fails and refunds it.

Every limit here is derived from how fast this machine runs the job now.
"""

import math
import signal
import time

import pytest

from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from removal.models import RemovalJob
from tests.conftest import wait_for
from tests.job_factory import submitted_job
from tests.speed import model_load_seconds, photo_taking_at_least

pytestmark = [pytest.mark.e2e, pytest.mark.model]

POLL = 0.05  # how often the test looks for the job in "processing"
# The job (u2net already loaded) must last this many polls, so the kill
# lands while it runs: the worker loads u2net inside the job on top.
POLLS_PER_JOB = 20
STALE_GRACE = 1


def status_of(job_id) -> str:
    return RemovalJob.objects.values_list("status", flat=True).get(pk=job_id)


def test_a_job_whose_worker_is_killed_is_redone_or_refunded_never_left_processing(
    start_worker, account
):
    data, run_seconds = photo_taking_at_least(POLL * POLLS_PER_JOB, model="u2net")
    job_seconds = model_load_seconds("u2net") + run_seconds
    # Room for the redone job to finish; if it does not, it fails with a
    # timeout and is refunded, which the guarantee allows too.
    job_timeout = max(8, math.ceil(3 * job_seconds))
    retry = job_timeout + STALE_GRACE + 5  # as revid/settings.py derives it
    env = {
        "REMOVAL_JOB_TIMEOUT": str(job_timeout),
        "REMOVAL_STALE_GRACE": str(STALE_GRACE),
        "WARM_MODELS": "",  # u2net loads inside the job: it stays in "processing" longer
    }

    job = submitted_job(account, data=data, model="u2net")
    started = time.monotonic()
    first = start_worker(**env)
    wait_for(
        lambda: status_of(job.id) == "processing",
        timeout=120,
        interval=POLL,
        message="the worker never picked the job up",
    )
    startup = time.monotonic() - started
    first.kill(signal.SIGKILL)
    first.process.wait(timeout=10)
    # Killed mid-job (the job lasts at least POLLS_PER_JOB polls), nothing cleaned up.
    assert status_of(job.id) == "processing", f"the job took {job_seconds:.2f}s here"

    second = start_worker(**env)
    # Redelivery comes `retry` seconds after the first delivery, then the
    # job runs or times out (the reaper's minutely schedule may fail it
    # first). Starting a worker took `startup` seconds above.
    bound = 2 * startup + retry + job_timeout + 60
    wait_for(
        lambda: status_of(job.id) in ("completed", "failed"),
        timeout=bound,
        interval=2,
        message=f"job still {status_of(job.id)} after {bound:.0f}s:\n{second.log()[-3000:]}",
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
