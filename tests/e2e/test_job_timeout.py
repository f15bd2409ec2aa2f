"""A job over REMOVAL_JOB_TIMEOUT ends failed, with a clear message and one refund."""

import pytest

from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from removal.models import RemovalJob
from tests.conftest import wait_for
from tests.images import encode, photo
from tests.job_factory import submitted_job

pytestmark = [pytest.mark.e2e, pytest.mark.model]


def test_a_job_over_the_timeout_fails_with_one_refund(start_worker, account, client):
    # A 1-second budget cannot cover loading u2net (176 MB) and running it
    # on a 3000x3000 photo, on any machine this runs on.
    big = encode(photo("astronaut").resize((3000, 3000)), "JPEG", quality=85)
    job = submitted_job(account, data=big, model="u2net")
    worker = start_worker(REMOVAL_JOB_TIMEOUT="1", WARM_MODELS="")

    def finished():
        return RemovalJob.objects.filter(pk=job.pk, status__in=["completed", "failed"]).exists()

    wait_for(finished, timeout=90, interval=0.3, message=f"never finished:\n{worker.log()[-3000:]}")
    job.refresh_from_db()
    assert job.status == RemovalJob.Status.FAILED
    assert job.error == "Processing timed out after 1 second"
    assert job.message == "Background removal failed: Processing timed out after 1 second"
    assert not job.output_file.name

    refunds = LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.REFUND)
    assert refunds.count() == 1 and refunds.get().amount == 25
    account.refresh_from_db()
    assert account.credit_balance == 1000 == ledger_sum(account=account)

    body = client.get(f"/api/get/{job.id}").json()
    assert body["status"] == "failed"
    assert body["result"] == {"error": "Processing timed out after 1 second"}
