"""A batch's items run back to back in one task, the work around the model overlapped.

A single job is one task: claim, decode, model, finish, store, end. Run that
way a batch pays, per item, a trip through the queue (enqueue, a worker's
poll, the task's own rows) and leaves the cores to the model alone while it
decodes and encodes. Here the task that got one item goes on with the
batch's next ones. While the model runs on item *k* a helper thread
finishes item *k-1* (mask, compositing, encoding: Pillow, zlib and numpy
release the GIL as the engines do) and decodes the item expected next;
it is handed *k* the moment *k*'s model run ends, so it works on the core
the model left while this thread stores *k-1* and claims *k+1*. On ONNX
Runtime with every core taken by its threads the helper would only slow
the model down, so there the same steps run in turn (``overlap_pays``).
Database reads and writes stay on the task's own thread, one look at the
pending items per claim.

The same rules as one job per task hold:

- **Fairness.** Before it claims another item the runner looks for work
  of anyone else in the queue (a single image, another batch's queued
  item); if there is some, or the worker is stopping, it ends and hands
  the batch's next item to the queue (``batches.queue_next_items``, by the
  last item's ``job_ended``), behind that work. So another customer's
  image waits for the item under way, as before.
- **Time.** It claims items only during the first half of
  REMOVAL_JOB_TIMEOUT, and each item's deadline is its own timeout, cut to
  the task's (so the task ends before django-q2's hard limit, and before a
  redelivery): every item gets at least half its usual time.
- **Ends.** Each item ends on its own (``services.complete_job`` or
  ``fail_job``: refunded once), in claim order; a worker killed mid-run
  leaves at most two items in "processing", which the reaper fails and
  refunds (or a redelivery redoes), as for any job.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Q

from imaging.errors import DeadlineExceeded
from imaging.options import OutputOptions
from imaging.pipeline import Prepared, finish_prediction, predict, prepare
from removal import registry, services
from removal.models import RemovalJob

logger = logging.getLogger(__name__)

EndCallback = Callable[[RemovalJob, float], None]


def overlap_pays() -> bool:
    """Whether finishing one item beside the next one's model run gains time.

    On OpenVINO (the default engine) it does even where the model's threads
    fill every core: they sleep when idle, and the helper fills those moments
    (measured on 2 cores, one worker: mixed 0.3/1/12 MP sets 124-128 images
    a minute overlapped against 117-122 in turn, 0.3 MP the same 185). On
    ONNX Runtime only with a core to spare: the cores this worker may use
    outnumber its workers' model threads (ORT_INTRA_OP_THREADS each, or
    every core when it is 0); beside threads that fill every core the helper
    slowed the model by more than it hid (0.3 MP: 0.85x the model's own
    speed overlapped, 0.89x in turn).
    """
    if settings.MODEL_ENGINE != "onnxruntime":
        return True
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    threads = settings.ORT_INTRA_OP_THREADS or cores
    return cores > settings.Q_WORKERS * threads


class _InTurn(Executor):
    """The helper where it does not pay: each step runs as it is handed over."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


@dataclass
class _Item:
    """A claimed item on its way through the stages."""

    job: RemovalJob
    started: float  # time.monotonic() of its claim
    deadline: float
    stages: dict[str, float] = field(default_factory=dict)
    prepared: Prepared | None = None
    prediction: Any = None
    error: BaseException | None = None

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise DeadlineExceeded("Processing took longer than the time limit.")


@dataclass
class _Ahead:
    """The item expected next, decoded before it is claimed (nothing about it changes)."""

    job_id: uuid.UUID
    data: bytes | None = None
    background: bytes | None = None
    prepared: Prepared | None = None
    error: BaseException | None = None
    seconds: float = 0.0


def run_items(
    *,
    job_id: uuid.UUID | str,
    should_stop: Callable[[], bool] = lambda: False,
    on_end: EndCallback | None = None,
) -> RemovalJob | None:
    """Runs the batch item ``job_id``, then the batch's next pending items while
    nobody else waits; returns the first item (None if it does not exist).

    A job that is not a batch item runs as ``services.process_job`` runs it.
    """
    first = RemovalJob.objects.select_related("account").filter(pk=job_id).first()
    if first is None or first.batch_id is None:
        return _single(job_id, on_end)
    if not first.mark_processing(stale_before=services.stale_cutoff()):
        logger.info("Job %s is %s; not processing it again", first.id, first.status)
        return first
    try:
        session = registry.get_session(first.model_name)
    except BaseException as exc:
        timeout = settings.REMOVAL_JOB_TIMEOUT
        services.fail_job(job=first, error=services.describe_failure(exc, timeout=timeout))
        if not isinstance(exc, Exception):
            raise
        return first
    _Runner(first, session, should_stop=should_stop, on_end=on_end).run()
    first.refresh_from_db()
    return first


def _single(job_id, on_end: EndCallback | None) -> RemovalJob | None:
    started = time.monotonic()
    job = services.process_job(job_id=job_id)
    if job is not None and job.is_finished and on_end is not None:
        on_end(job, time.monotonic() - started)
    return job


class _Runner:
    def __init__(self, first: RemovalJob, session, *, should_stop, on_end):
        self.batch_id = first.batch_id
        self.session = session
        self.should_stop = should_stop
        self.on_end = on_end
        self.timeout = settings.REMOVAL_JOB_TIMEOUT
        now = time.monotonic()
        self.task_deadline = now + self.timeout
        self.claim_until = now + self.timeout / 2
        self.first = self._item(first, now)
        # The pending item that followed the last claimed one in the claim's look.
        self._after_claimed: dict[uuid.UUID, RemovalJob | None] = {}
        self.helper: Executor = (
            ThreadPoolExecutor(1, thread_name_prefix="batch-item") if overlap_pays() else _InTurn()
        )

    def _item(self, job: RemovalJob, started: float) -> _Item:
        return _Item(
            job=job, started=started, deadline=min(started + self.timeout, self.task_deadline)
        )

    def run(self) -> None:
        """Steps per item *k*: the model on *k*, while the helper finishes *k-1* and
        decodes *k+1* (the item expected next, read before *k*'s run); then the
        helper starts finishing *k* at once, on the core the model just left,
        while this thread stores and ends *k-1*, claims *k+1* and reads the
        item expected after it. Without a helper the same steps run in turn."""
        current: _Item | None = self.first
        previous: _Item | None = None
        finishing: Future | None = None
        try:
            self._prepare(current)
            ahead = self._expected_after(current)
            preparing = self.helper.submit(self._prepare_ahead, ahead)
            while current is not None:
                self._predict(current)
                finished_previous = finishing.result() if finishing is not None else None
                preparing.result()
                finishing = self.helper.submit(self._finish, current)
                if previous is not None:
                    self._end(previous, finished_previous)
                previous, current = current, self._claim_next()
                if current is not None:
                    self._take_ahead(current, ahead)
                    ahead = self._expected_after(current)
                    preparing = self.helper.submit(self._prepare_ahead, ahead)
            self._end(previous, finishing.result())
        except BaseException as exc:
            for item in (previous, current):
                if item is not None:
                    services.fail_job(
                        job=item.job, error=services.describe_failure(exc, timeout=self.timeout)
                    )
            raise
        finally:
            self.helper.shutdown(wait=True, cancel_futures=True)

    # --- the stages --------------------------------------------------------------

    def _read(self, job: RemovalJob) -> tuple[bytes, bytes | None]:
        with job.input_file.open("rb") as handle:
            data = handle.read()
        background = None
        if job.background_file.name:
            with job.background_file.open("rb") as handle:
                background = handle.read()
        return data, background

    def _prepare(self, item: _Item) -> None:
        try:
            with services.timed(item.stages, "read_input"):
                data, background = self._read(item.job)
            with services.timed(item.stages, "decode"):
                item.prepared = prepare(
                    data, self.session, max_pixels=settings.MAX_IMAGE_PIXELS, background=background
                )
        except Exception as exc:
            item.error = exc

    def _predict(self, item: _Item) -> None:
        if item.error is not None:
            return
        try:
            item.check()
            with services.timed(item.stages, "model"):
                item.prediction = predict(item.prepared, self.session)
        except Exception as exc:
            item.error = exc

    def _finish(self, item: _Item | None):
        """The finished file of ``item`` (on the helper thread, beside the next model run)."""
        if item is None or item.error is not None:
            return None
        try:
            with services.timed(item.stages, "finish"):
                return finish_prediction(
                    item.prepared,
                    item.prediction,
                    OutputOptions.from_json(item.job.options),
                    check=item.check,
                )
        except Exception as exc:
            item.error = exc
            return None
        finally:
            item.prepared = item.prediction = None

    def _prepare_ahead(self, ahead: _Ahead | None) -> None:
        """Decodes the item expected next (on the helper thread, beside a model run)."""
        if ahead is None or ahead.data is None:
            return
        started = time.perf_counter()
        try:
            ahead.prepared = prepare(
                ahead.data,
                self.session,
                max_pixels=settings.MAX_IMAGE_PIXELS,
                background=ahead.background,
            )
        except Exception as exc:
            ahead.error = exc
        ahead.seconds = time.perf_counter() - started
        ahead.data = ahead.background = None

    def _end(self, item: _Item, finished) -> None:
        """Stores and completes the item, or fails and refunds it; announces either."""
        try:
            if item.error is None:
                item.check()
                services.complete_job(
                    job=item.job, cutout=finished, started=item.started, stages=item.stages
                )
        except Exception as exc:
            item.error = exc
        if item.error is not None:
            services.fail_job(
                job=item.job, error=services.describe_failure(item.error, timeout=self.timeout)
            )
        if self.on_end is not None:
            self.on_end(item.job, time.monotonic() - item.started)

    # --- which item next ---------------------------------------------------------

    def _pending(self):
        return RemovalJob.objects.filter(
            batch_id=self.batch_id, status=RemovalJob.Status.PENDING
        ).order_by("batch_index")

    def _expected_after(self, current: _Item) -> _Ahead | None:
        """The item likely claimed next, its input read here (the helper decodes it):
        the one after ``current`` in the claim's own look, else looked up."""
        if current.job.pk in self._after_claimed:
            job = self._after_claimed.pop(current.job.pk)
        else:
            job = self._pending().exclude(pk=current.job.pk).first()
        if job is None:
            return None
        ahead = _Ahead(job_id=job.pk)
        try:
            ahead.data, ahead.background = self._read(job)
        except Exception:
            return None  # read again (and failed properly) if it is claimed
        return ahead

    def _take_ahead(self, item: _Item, ahead: _Ahead | None) -> None:
        if (
            ahead is None
            or ahead.job_id != item.job.pk
            or (ahead.prepared is None and ahead.error is None)
        ):
            self._prepare(item)
            return
        item.prepared, item.error = ahead.prepared, ahead.error
        item.stages["decode"] = ahead.seconds

    def _others_waiting(self) -> bool:
        """Whether anyone else's work is queued: a single job, another batch's queued item."""
        return (
            RemovalJob.objects.filter(status=RemovalJob.Status.PENDING)
            .filter(Q(batch__isnull=True) | Q(queued_at__isnull=False))
            .exclude(batch_id=self.batch_id)
            .exists()
        )

    def _claim_next(self) -> _Item | None:
        """The batch's next pending item, claimed, unless the runner must hand over."""
        if time.monotonic() > self.claim_until or self.should_stop() or self._others_waiting():
            return None
        looked = 3
        candidates = list(self._pending().select_related("account")[:looked])
        self._after_claimed = {}
        for index, job in enumerate(candidates):
            # Claimed for the batch's queue too (it counts as in flight there),
            # in the one statement that claims it for this worker.
            if job.mark_processing(queued=True):
                if index + 1 < len(candidates):
                    self._after_claimed[job.pk] = candidates[index + 1]
                elif len(candidates) < looked:
                    self._after_claimed[job.pk] = None  # it was the last pending one
                return self._item(job, time.monotonic())
        return None
