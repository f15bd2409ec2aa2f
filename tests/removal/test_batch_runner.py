"""A batch's items back to back in one task, the work around the model overlapped
where a core is spare:
the same bytes as one job per task, each item ended (and refunded) on its own,
and nobody else's image left waiting behind the batch."""

from datetime import timedelta
from unittest import mock

import pytest
from django.conf import settings
from django.utils import timezone

from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from imaging import pipeline
from imaging.options import OutputOptions
from removal import batch_runner, registry, services
from removal.models import Batch, RemovalJob
from tests.images import photo_bytes
from tests.job_factory import submitted_batch, submitted_job

pytestmark = pytest.mark.model

PHOTOS = ("astronaut", "coffee", "chelsea")


def run(job_id, on_commit, **kwargs):
    with mock.patch("removal.batches.enqueue_job") as enqueued, on_commit(execute=True):
        batch_runner.run_items(job_id=job_id, **kwargs)
    return enqueued


def items_of(batch) -> list[RemovalJob]:
    return list(RemovalJob.objects.filter(batch=batch).order_by("batch_index"))


@pytest.mark.parametrize("overlapped", [True, False], ids=["overlapped", "in-turn"])
@pytest.mark.parametrize(
    "fields",
    [{}, {"format": "webp", "bg_color": "#3366ff", "crop": "true", "max_width": "200"}],
    ids=["default", "options"],
)
def test_every_item_runs_in_one_task_with_the_bytes_a_single_job_gives(
    account, django_capture_on_commit_callbacks, fields, overlapped, monkeypatch
):
    """With a helper thread (a core to spare) or without, the same bytes."""
    monkeypatch.setattr(batch_runner, "overlap_pays", lambda: overlapped)
    photos = [photo_bytes(name) for name in PHOTOS]
    batch = submitted_batch(account, photos, **fields)
    first = items_of(batch)[0]

    enqueued = run(first.id, django_capture_on_commit_callbacks)

    session = registry.get_session("u2netp")
    jobs = items_of(batch)
    assert [job.status for job in jobs] == ["completed"] * 3, [job.error for job in jobs]
    for job, data in zip(jobs, photos, strict=True):
        alone = pipeline.remove_background(
            data,
            session,
            max_pixels=settings.MAX_IMAGE_PIXELS,
            options=OutputOptions.from_json(job.options),
        )
        with job.output_file.open("rb") as handle:
            assert handle.read() == alone.data
        assert (job.output_width, job.output_height) == (alone.width, alone.height)
        assert job.stage_seconds["model"] > 0 and job.attempts == 1
    enqueued.assert_not_called()  # no queue trip between items
    assert Batch.objects.get(pk=batch.pk).ended_at is not None


@pytest.mark.parametrize(
    "cores, workers, threads, pays",
    [(2, 1, 0, False), (2, 2, 1, False), (4, 1, 2, True), (8, 2, 0, False), (8, 2, 2, True)],
)
def test_on_onnxruntime_the_helper_runs_only_on_a_core_the_models_threads_leave(
    settings, monkeypatch, cores, workers, threads, pays
):
    monkeypatch.setattr(batch_runner.os, "sched_getaffinity", lambda pid: set(range(cores)))
    settings.MODEL_ENGINE = "onnxruntime"
    settings.Q_WORKERS, settings.ORT_INTRA_OP_THREADS = workers, threads
    assert batch_runner.overlap_pays() is pays


@pytest.mark.parametrize("engine", ["openvino", "openvino-bf16"])
@pytest.mark.parametrize("cores, workers, threads", [(2, 1, 0), (2, 2, 1), (8, 2, 0)])
def test_on_openvino_the_helper_runs_beside_the_model_even_on_every_core(
    settings, monkeypatch, engine, cores, workers, threads
):
    monkeypatch.setattr(batch_runner.os, "sched_getaffinity", lambda pid: set(range(cores)))
    settings.MODEL_ENGINE = engine
    settings.Q_WORKERS, settings.ORT_INTRA_OP_THREADS = workers, threads
    assert batch_runner.overlap_pays() is True


def test_the_helper_starts_finishing_an_item_before_the_previous_one_is_stored(
    account, django_capture_on_commit_callbacks, monkeypatch
):
    """After the model's run on item k the core it used is free while this thread
    stores k-1 and claims k+1: k's finishing is handed over first, to use it."""
    monkeypatch.setattr(batch_runner, "overlap_pays", lambda: True)
    events: list[tuple[str, int]] = []

    class Recording(batch_runner.ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            if fn.__name__ == "_finish":
                events.append(("finish handed over", args[0].job.batch_index))
            return super().submit(fn, *args, **kwargs)

    def complete(*, job, **kwargs):
        events.append(("stored", job.batch_index))
        return real_complete(job=job, **kwargs)

    real_complete = services.complete_job
    monkeypatch.setattr(batch_runner, "ThreadPoolExecutor", Recording)
    monkeypatch.setattr(batch_runner.services, "complete_job", complete)
    batch = submitted_batch(account, [photo_bytes(name) for name in PHOTOS])

    run(items_of(batch)[0].id, django_capture_on_commit_callbacks)

    assert [job.status for job in items_of(batch)] == ["completed"] * 3
    assert events == [
        ("finish handed over", 0),
        ("finish handed over", 1),
        ("stored", 0),
        ("finish handed over", 2),
        ("stored", 1),
        ("stored", 2),
    ]


def test_the_item_expected_next_comes_from_the_claims_own_look(
    account, django_capture_on_commit_callbacks, monkeypatch
):
    """One look at the pending items per claim: the next one's input is read from
    what the claim saw, not looked up again (a query per item on the model's cores)."""
    looks = []
    real_pending = batch_runner._Runner._pending

    def pending(self):
        looks.append(1)
        return real_pending(self)

    monkeypatch.setattr(batch_runner._Runner, "_pending", pending)
    batch = submitted_batch(account, [photo_bytes(name) for name in PHOTOS + PHOTOS[:1]])

    run(items_of(batch)[0].id, django_capture_on_commit_callbacks)

    assert [job.status for job in items_of(batch)] == ["completed"] * 4
    # The first item's next, then one per claim (three items and the empty last look).
    assert len(looks) == 1 + 4


def test_it_hands_over_when_another_customers_image_waits(
    account, other_account, django_capture_on_commit_callbacks
):
    batch = submitted_batch(account, [photo_bytes(name) for name in PHOTOS])
    with mock.patch("removal.services.enqueue_job"):
        single = submitted_job(other_account)
    first = items_of(batch)[0]

    enqueued = run(first.id, django_capture_on_commit_callbacks)

    assert [job.status for job in items_of(batch)] == ["completed", "pending", "pending"]
    # The batch's next item goes to the queue, behind the single image.
    enqueued.assert_called_once()
    assert enqueued.call_args.kwargs["job_id"] == items_of(batch)[1].id
    assert RemovalJob.objects.get(pk=single.pk).status == "pending"


def test_a_stopping_worker_claims_no_further_item(account, django_capture_on_commit_callbacks):
    batch = submitted_batch(account, [photo_bytes(name) for name in PHOTOS[:2]])

    run(items_of(batch)[0].id, django_capture_on_commit_callbacks, should_stop=lambda: True)

    assert [job.status for job in items_of(batch)] == ["completed", "pending"]


def test_an_item_that_fails_is_refunded_once_and_the_others_complete(
    account, django_capture_on_commit_callbacks
):
    batch = submitted_batch(account, [photo_bytes(name) for name in PHOTOS])
    broken = items_of(batch)[1]
    # Damaged in storage after its checks: it fails in the worker, as a single job would.
    with broken.input_file.storage.open(broken.input_file.name, "wb") as handle:
        handle.write(b"\xff\xd8\xff\xe0 not a jpeg any more")

    run(items_of(batch)[0].id, django_capture_on_commit_callbacks)

    jobs = items_of(batch)
    assert [job.status for job in jobs] == ["completed", "failed", "completed"]
    assert jobs[1].error
    kinds = sorted(LedgerEntry.objects.filter(job=jobs[1]).values_list("kind", flat=True))
    assert kinds == ["charge", "refund"]
    account.refresh_from_db()
    assert account.credit_balance == ledger_sum(account=account)
    assert Batch.objects.get(pk=batch.pk).ended_at is not None


def test_items_are_claimed_only_in_the_first_half_of_the_task_timeout(
    account, django_capture_on_commit_callbacks, settings, monkeypatch
):
    batch = submitted_batch(account, [photo_bytes(name) for name in PHOTOS[:2]])
    settings.REMOVAL_JOB_TIMEOUT = 60
    clock = iter([0.0] + [31.0] * 1000)  # the runner starts at 0; every later look says 31 s
    real = batch_runner.time.monotonic
    base = real()
    monkeypatch.setattr(batch_runner.time, "monotonic", lambda: base + next(clock))

    run(items_of(batch)[0].id, django_capture_on_commit_callbacks)

    assert [job.status for job in items_of(batch)] == ["completed", "pending"]


def test_claiming_an_item_counts_it_as_queued_in_the_same_statement(account):
    """The runner's claim: processing and in the batch's queue at once, or neither,
    so a worker killed mid-claim never leaves an item queued without a task."""
    batch = submitted_batch(account, [photo_bytes(name) for name in PHOTOS[:2]])
    first, second = items_of(batch)
    assert first.queued_at is None

    assert first.mark_processing(queued=True)
    first.refresh_from_db()
    assert first.status == RemovalJob.Status.PROCESSING and first.queued_at is not None

    taken = RemovalJob.objects.get(pk=second.pk)
    assert taken.mark_processing()  # another worker had it first
    assert not second.mark_processing(queued=True)
    second.refresh_from_db()
    assert second.queued_at is None


def test_a_worker_killed_after_claiming_an_item_leaves_the_batch_to_go_on(
    account, django_capture_on_commit_callbacks
):
    batch = submitted_batch(account, [photo_bytes(name) for name in PHOTOS])
    claimed = items_of(batch)[0]
    assert claimed.mark_processing(queued=True)  # then its worker dies
    RemovalJob.objects.filter(pk=claimed.pk).update(
        started_at=timezone.now() - timedelta(seconds=settings.REMOVAL_JOB_TIMEOUT + 3600)
    )

    with (
        mock.patch("removal.batches.enqueue_job") as enqueued,
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.fail_stale_jobs()

    jobs = items_of(batch)
    assert [job.status for job in jobs] == ["failed", "pending", "pending"]
    # The batch's next item is handed to the queue (BATCH_CONCURRENCY in flight).
    queued = [call.kwargs["job_id"] for call in enqueued.call_args_list]
    assert queued == [jobs[1].id][: settings.BATCH_CONCURRENCY]
