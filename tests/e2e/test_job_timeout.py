"""A job over REMOVAL_JOB_TIMEOUT ends failed, with a clear message and one refund."""

import pytest

from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from imaging.options import OutputOptions
from removal.models import RemovalJob
from tests.conftest import wait_for
from tests.job_factory import submitted_job
from tests.speed import photo_taking_at_least

pytestmark = [pytest.mark.e2e, pytest.mark.model]

TIMEOUT = 1  # REMOVAL_JOB_TIMEOUT's smallest value
# The photo must take this many times the timeout here with u2net already
# loaded; the worker also loads u2net inside the job, so it takes longer
# still. The margin covers the machine getting faster between the two.
MARGIN = 3


def test_a_job_over_the_timeout_fails_with_one_refund(start_worker, account, client):
    # Measured, not assumed: a photo u2net needs well over the timeout for
    # here. Alpha matting makes each pixel dearer, so a fast machine still
    # finds one within the pixel limit.
    matting = OutputOptions(alpha_matting=True)
    big, measured = photo_taking_at_least(MARGIN * TIMEOUT, model="u2net", options=matting)
    job = submitted_job(account, data=big, model="u2net", alpha_matting="true")
    worker = start_worker(REMOVAL_JOB_TIMEOUT=str(TIMEOUT), WARM_MODELS="")

    def finished():
        return RemovalJob.objects.filter(pk=job.pk, status__in=["completed", "failed"]).exists()

    # The worker gives up at the timeout; starting it is the slow part.
    wait_for(
        finished,
        timeout=120 + 10 * measured,
        interval=0.3,
        message=f"never finished:\n{worker.log()[-3000:]}",
    )
    job.refresh_from_db()
    assert job.status == RemovalJob.Status.FAILED, f"u2net took {measured:.2f}s in this process"
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
