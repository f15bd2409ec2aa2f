"""The worker's task: it runs the job and hands memory back, whatever happened."""

from types import SimpleNamespace

import pytest

from removal import registry, services, tasks


def test_free_memory_is_handed_back_after_every_job_even_a_failed_one(monkeypatch):
    job_id = "00000000-0000-0000-0000-000000000000"
    calls = []
    monkeypatch.setattr(registry, "release_free_memory", lambda: calls.append("release"))

    def fail(*, job_id):
        calls.append("job")
        raise RuntimeError("boom")

    def complete(*, job_id):
        calls.append("job")
        return SimpleNamespace(status="completed", is_finished=False)

    def already_taken(*, job_id):  # a duplicate delivery: another worker has it
        calls.append("job")
        return None

    monkeypatch.setattr(services, "process_job", fail)
    with pytest.raises(RuntimeError, match="boom"):
        tasks.process_removal_job(job_id)
    monkeypatch.setattr(services, "process_job", complete)
    # django-q2 records the task's result: the status the job ended in.
    assert tasks.process_removal_job(job_id) == "completed"
    monkeypatch.setattr(services, "process_job", already_taken)
    assert tasks.process_removal_job(job_id) is None

    # Once after each job, failed, completed or not run, never before it.
    assert calls == ["job", "release"] * 3
