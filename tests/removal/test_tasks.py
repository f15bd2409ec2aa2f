"""The worker's task: it runs the job and hands memory back, whatever happened."""

import pytest

from removal import registry, services, tasks


def test_free_memory_is_handed_back_after_every_job_even_a_failed_one(monkeypatch):
    released = []
    monkeypatch.setattr(registry, "release_free_memory", lambda: released.append(True))

    def fail(*, job_id):
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "process_job", fail)
    with pytest.raises(RuntimeError):
        tasks.process_removal_job("00000000-0000-0000-0000-000000000000")
    monkeypatch.setattr(services, "process_job", lambda *, job_id: None)
    assert tasks.process_removal_job("00000000-0000-0000-0000-000000000000") is None

    assert released == [True, True]
