"""Rotating SECRET_KEY keeps every queued task: the old key goes into
SECRET_KEY_FALLBACKS and django-q2's signatures are checked against it too."""

import pytest
from django_q.conf import Conf
from django_q.signing import BadSignature, SignedPackage

from removal.models import RemovalJob
from tests.conftest import wait_for
from tests.job_factory import submitted_job

OLD, NEW = "the-key-before-the-rotation-0123456789", "the-key-after-the-rotation-9876543210"


def test_a_task_signed_with_a_fallback_key_still_loads(settings, monkeypatch):
    monkeypatch.setattr(Conf, "SECRET_KEY", OLD)
    queued_before = SignedPackage.dumps({"func": "removal.tasks.process_removal_job"})
    monkeypatch.setattr(Conf, "SECRET_KEY", NEW)

    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(BadSignature):
        SignedPackage.loads(queued_before)
    settings.SECRET_KEY_FALLBACKS = ["some-other-old-key", OLD]
    assert SignedPackage.loads(queued_before) == {"func": "removal.tasks.process_removal_job"}


def test_new_tasks_are_signed_with_the_current_key_only(settings, monkeypatch):
    settings.SECRET_KEY_FALLBACKS = [OLD]
    monkeypatch.setattr(Conf, "SECRET_KEY", NEW)
    queued_after = SignedPackage.dumps({"n": 1})
    # A machine still on the old key alone cannot read it: signed with NEW.
    monkeypatch.setattr(Conf, "SECRET_KEY", OLD)
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(BadSignature):
        SignedPackage.loads(queued_after)


def test_a_forged_task_is_still_refused(settings, monkeypatch):
    monkeypatch.setattr(Conf, "SECRET_KEY", "an-attackers-guess")
    forged = SignedPackage.dumps({"func": "os.system", "args": ("true",)})
    monkeypatch.setattr(Conf, "SECRET_KEY", NEW)
    settings.SECRET_KEY_FALLBACKS = [OLD]
    with pytest.raises(BadSignature):
        SignedPackage.loads(forged)


@pytest.mark.e2e
@pytest.mark.model
def test_a_job_queued_before_the_rotation_runs_on_a_worker_started_after_it(
    start_worker, account, settings
):
    # Queued by this process with the key it has (the web server's, before
    # the rotation); the worker starts with a new key and the old as fallback.
    job = submitted_job(account, model="u2netp", photo_name="coffee")
    worker = start_worker(
        SECRET_KEY=NEW, SECRET_KEY_FALLBACKS=settings.SECRET_KEY, WARM_MODELS="u2netp"
    )
    wait_for(
        lambda: RemovalJob.objects.get(pk=job.pk).is_finished,
        timeout=180,
        interval=0.5,
        message=f"the job never ran:\n{worker.log()[-3000:]}",
    )
    job.refresh_from_db()
    assert job.status == RemovalJob.Status.COMPLETED, job.error
    assert "Failed to push task" not in worker.log()
