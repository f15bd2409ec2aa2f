"""A usage history built through the real services (charges, a refund, an
adjustment), for the usage selectors, page, CSV and API tests."""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Account, ApiKey
from accounts.services import create_api_key
from billing.models import LedgerEntry
from billing.services import adjust_credits
from removal.models import RemovalJob
from removal.services import fail_job
from tests.images import solid_png
from tests.job_factory import submitted_job


def run_job(account: Account, *, api_key: ApiKey | None = None, fail: bool = False) -> RemovalJob:
    """A charged job, finished without running a model."""
    job = submitted_job(account, data=solid_png(32, 32), filename="photo.png", api_key=api_key)
    assert job.mark_processing()
    if fail:
        assert fail_job(job=job, error="The image could not be processed")
    else:
        assert job.mark_completed(
            output_size=1, elapsed_seconds=0.1, expires_at=timezone.now() + timedelta(hours=1)
        )
    return job


def backdate(rows, *, days: int) -> None:
    """Moves ledger rows into the past (rows are append-only; tests of
    periods need history)."""
    LedgerEntry.objects.filter(pk__in=[row.pk for row in rows]).update(
        created_at=timezone.now() - timedelta(days=days)
    )


@dataclass
class History:
    account: Account
    key: ApiKey
    other_key: ApiKey


@pytest.fixture
def history(account, other_account) -> History:
    """acme: 1000 granted; key "ci": one completed and one failed (refunded)
    job; key "web": one completed job; an adjustment of -100. Balance 850.
    The outsider has a job of its own, never shown to acme."""
    key, _ = create_api_key(account=account, name="ci")
    other_key, _ = create_api_key(account=account, name="web")
    run_job(account, api_key=key)
    run_job(account, api_key=key, fail=True)
    run_job(account, api_key=other_key)
    adjust_credits(account=account, amount=-100, note="=HYPERLINK(1) correction")
    run_job(other_account)
    account.refresh_from_db()
    assert account.credit_balance == 850
    return History(account=account, key=key, other_key=other_key)
