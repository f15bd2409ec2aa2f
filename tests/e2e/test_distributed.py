"""Scale-out: one database, one Redis broker, one S3 bucket, two worker processes.

Jobs go in over HTTP (live_server), travel through Redis to two real
``qcluster`` processes, and their files live in an S3-compatible bucket
(moto's server on loopback). The database is whatever the suite runs on:
PostgreSQL in CI (DATABASE_URL), else the SQLite test file, which every
process here opens too.
"""

import math
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db.models import Count

from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from removal.models import RemovalJob
from tests.conftest import bucket_keys, wait_for
from tests.images import encode, photo
from tests.speed import job_seconds, wait_while_progressing

pytestmark = [pytest.mark.e2e, pytest.mark.model]

JOBS = 30
PRICE = 25
STARTING_CREDITS = 1000 + JOBS * PRICE  # the account fixture's 1000, plus room for 30
# Short limits so the test can watch the reaper work, scaled from one job's
# measured time on this machine (see `Limits`), never below these.
JOB_TIMEOUT = 20
STALE_GRACE = 5
QUEUE_TIMEOUT = 45

PROCESSING_LINE = re.compile(r"processing removal-([0-9a-f-]{36})")


class Limits:
    """Deadlines from one job's measured time here (u2netp loaded, this process).

    ``drain``: the whole batch on one worker. A worker runs a job no slower
    than ten times the measurement, even with the test, the web server and
    the other worker beside it on a loaded machine.
    """

    def __init__(self, seconds_per_job: float, *, queue_factor: float):
        self.per_job = seconds_per_job
        self.drain = JOBS * seconds_per_job
        self.job_timeout = max(JOB_TIMEOUT, math.ceil(10 * seconds_per_job))
        self.queue_timeout = max(QUEUE_TIMEOUT, math.ceil(queue_factor * self.drain))
        # The longest a worker may go without finishing a job before the
        # test calls it stuck: well over a job, or a worker starting.
        self.stall = max(60.0, 20 * seconds_per_job)


@pytest.fixture
def small_photo() -> bytes:
    """A real photograph, small so 30 of them stay quick (u2netp sees 320x320)."""
    img = photo("chelsea")  # 451x300
    return encode(img.resize((300, 200)), "JPEG", quality=85)


@pytest.fixture
def measured(small_photo) -> float:
    """Seconds one job takes here now (the slowest of three, after a first run)."""
    job_seconds(small_photo, model="u2netp")
    return job_seconds(small_photo, model="u2netp", runs=3)


@pytest.fixture
def cluster(live_server, start_worker, redis_broker, s3_storage_settings, account):
    """Starts worker processes configured like a second and third machine."""
    from billing.services import grant_credits

    grant_credits(account=account, amount=JOBS * PRICE, note="distributed test")

    def start(count: int, limits: Limits):
        env = {
            **s3_storage_settings,
            "REDIS_URL": redis_broker,
            "Q_WORKERS": "1",
            "ORT_INTRA_OP_THREADS": "1",
            "WARM_MODELS": "u2netp",
            "REMOVAL_JOB_TIMEOUT": str(limits.job_timeout),
            "REMOVAL_STALE_GRACE": str(STALE_GRACE),
            "REMOVAL_QUEUE_TIMEOUT": str(limits.queue_timeout),
        }
        workers = [start_worker(**env) for _ in range(count)]
        for worker in workers:
            wait_for(
                lambda w=worker: "running." in w.log() or w.process.poll() is not None,
                timeout=120,
                message="qcluster never came up",
            )
            assert worker.process.poll() is None, worker.log()
        return workers

    return start


def submit_all(live_server, api_key: str, data: bytes) -> list[str]:
    def submit(index: int) -> str:
        response = requests.post(
            f"{live_server.url}/paid/image/remove/background",
            headers={"x-api-key": api_key},
            files={"file": (f"cat-{index}.jpg", data, "image/jpeg")},
            data={"model": "u2netp"},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        return response.json()["task_id"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(submit, range(JOBS)))


def unfinished(task_ids: list[str]) -> int:
    return (
        RemovalJob.objects.filter(pk__in=task_ids)
        .exclude(status__in=[RemovalJob.Status.COMPLETED, RemovalJob.Status.FAILED])
        .count()
    )


def processed_ids(worker) -> list[str]:
    return PROCESSING_LINE.findall(worker.log())


def assert_ledger_exact(account, task_ids: list[str]) -> None:
    """One charge per job, one refund per failed job, balance = ledger."""
    jobs = {str(job.pk): job for job in RemovalJob.objects.filter(pk__in=task_ids)}
    assert len(jobs) == JOBS
    entries = LedgerEntry.objects.filter(job__in=task_ids)
    per_job_kind = entries.values("job", "kind").annotate(n=Count("id"))
    assert all(row["n"] == 1 for row in per_job_kind), list(per_job_kind)
    charged = {str(e.job_id) for e in entries.filter(kind="charge")}
    refunded = {str(e.job_id) for e in entries.filter(kind="refund")}
    failed = {pk for pk, job in jobs.items() if job.status == RemovalJob.Status.FAILED}
    assert charged == set(jobs)
    assert refunded == failed
    completed = JOBS - len(failed)
    account.refresh_from_db()
    assert account.credit_balance == STARTING_CREDITS - completed * PRICE
    assert ledger_sum(account=account) == account.credit_balance


def assert_outputs_in_bucket(s3_env, task_ids: list[str]) -> None:
    completed = RemovalJob.objects.filter(pk__in=task_ids, status=RemovalJob.Status.COMPLETED)
    expected = {f"outputs/{job.pk}_output.png" for job in completed}
    assert bucket_keys(s3_env, "outputs/") == expected
    inputs = RemovalJob.objects.filter(pk__in=task_ids).values_list("input_file", flat=True)
    assert bucket_keys(s3_env, "inputs/") == set(inputs)
    assert all(name.startswith("inputs/") for name in inputs)


def test_thirty_jobs_on_two_workers_each_complete_exactly_once(
    cluster, live_server, api_key, account, small_photo, s3_storage_settings, measured
):
    from django_q.models import Task

    # The queue timeout is far beyond the batch's time on one worker: every
    # job here must complete, none may be reaped for waiting.
    limits = Limits(measured, queue_factor=10)
    workers = cluster(2, limits)
    task_ids = submit_all(live_server, api_key, small_photo)

    wait_while_progressing(
        lambda: unfinished(task_ids),
        stall=limits.stall,
        message=f"jobs stopped finishing (one took {measured:.2f}s here)",
    )

    jobs = {str(job.pk): job for job in RemovalJob.objects.filter(pk__in=task_ids)}
    assert {job.status for job in jobs.values()} == {RemovalJob.Status.COMPLETED}
    assert all(job.attempts == 1 for job in jobs.values())
    # Each task was delivered once, to one worker. Which worker is Redis's
    # choice: on a loaded machine one may take most (or all) of them.
    seen = [processed_ids(worker) for worker in workers]
    assert sorted(seen[0] + seen[1]) == sorted(task_ids)
    # django-q2's monitor saves a task's result only after the task has
    # returned, so the last rows can come a moment after the jobs' ends.
    names = [f"removal-{pk}" for pk in task_ids]
    wait_while_progressing(
        lambda: JOBS - Task.objects.filter(name__in=names).count(),
        stall=limits.stall,
        message="task results stopped being saved",
    )
    rows = Task.objects.filter(name__in=names)
    assert rows.count() == JOBS
    assert all(row.success and row.attempt_count == 1 for row in rows)

    assert_outputs_in_bucket(s3_storage_settings, task_ids)
    assert_ledger_exact(account, task_ids)

    # A result streams back from the bucket through the web server.
    first = task_ids[0]
    download = requests.get(f"{live_server.url}/output/{first}_output.png", timeout=30)
    assert download.status_code == 200
    assert download.headers["Content-Type"] == "image/png"
    assert download.content.startswith(b"\x89PNG")
    assert len(download.content) == jobs[first].output_size


def test_killing_a_worker_mid_run_loses_no_job_and_charges_none_twice(
    cluster, live_server, api_key, account, small_photo, s3_storage_settings, measured
):
    from django_q.tasks import async_task

    # The tasks the victim had taken off the queue wait out the queue
    # timeout: twice the batch's time on the survivor alone.
    limits = Limits(measured, queue_factor=2)
    victim, survivor = cluster(2, limits)
    submitted_at = time.monotonic()
    task_ids = submit_all(live_server, api_key, small_photo)

    def victim_frozen_mid_job():
        """The job the victim is running, with all its processes stopped
        (SIGSTOP) so that it cannot end before the kill; None, and the victim
        running on, when it has no job under way."""
        ids = processed_ids(victim)
        if not ids:
            return None
        os.killpg(victim.process.pid, signal.SIGSTOP)
        # Frozen: a job the database still shows as processing has not ended,
        # and cannot any more. (django-q2 logs "processing" just before the
        # claim, so the last logged job may still be pending: look again.)
        job = RemovalJob.objects.filter(pk=ids[-1], status=RemovalJob.Status.PROCESSING).first()
        if job is None:
            os.killpg(victim.process.pid, signal.SIGCONT)
            return None
        return str(job.pk)

    # Looked for ten times per measured job, while the batch lasts.
    killed_job = wait_for(
        victim_frozen_mid_job,
        timeout=limits.stall + 10 * limits.drain,
        interval=min(0.05, measured / 10),
        message="never caught the victim running a job",
    )
    victim.kill(signal.SIGKILL)
    victim.process.wait(timeout=10)
    # Killed mid-job, every time: the job is still processing, with nobody running it.
    assert RemovalJob.objects.get(pk=killed_job).status == RemovalJob.Status.PROCESSING
    pending_at_kill = {
        str(pk)
        for pk in RemovalJob.objects.filter(
            pk__in=task_ids, status=RemovalJob.Status.PENDING
        ).values_list("pk", flat=True)
    }

    def all_finished():
        if unfinished(task_ids) == 0:
            return True
        # The reaper's schedule fires every minute; enqueue it more often
        # here so the test need not wait for the clock. It still travels
        # through Redis and runs in the surviving worker.
        async_task("removal.tasks.fail_stale_jobs", task_name=f"reaper-{time.monotonic()}")
        return False

    # Lost tasks are reaped after the queue timeout, the killed job after the
    # job timeout and grace; the reaper waits its turn behind the survivor's
    # queue, which drains in `drain` seconds (ten times that on a bad day).
    bound = (
        limits.queue_timeout + limits.job_timeout + STALE_GRACE + 10 * limits.drain + limits.stall
    )
    wait_for(
        all_finished,
        timeout=bound - (time.monotonic() - submitted_at),
        interval=3,
        message="a job was lost",
    )

    jobs = {str(job.pk): job for job in RemovalJob.objects.filter(pk__in=task_ids)}
    statuses = {job.status for job in jobs.values()}
    assert statuses <= {RemovalJob.Status.COMPLETED, RemovalJob.Status.FAILED}
    # Redis does not redeliver, so no job ever started twice.
    assert all(job.attempts <= 1 for job in jobs.values())
    # The job the victim died in was failed by the reaper, and refunded once.
    assert jobs[killed_job].status == RemovalJob.Status.FAILED
    assert "stopped" in jobs[killed_job].error
    killed_entries = LedgerEntry.objects.filter(job=killed_job).order_by("created_at", "id")
    assert [entry.kind for entry in killed_entries] == [
        LedgerEntry.Kind.CHARGE,
        LedgerEntry.Kind.REFUND,
    ]
    assert sum(entry.amount for entry in killed_entries) == 0
    # The survivor kept working after the kill: every job still waiting then
    # that completed, it ran (the victim's taken tasks were reaped instead).
    # Its whole log, not only what it wrote after the kill: django-q2 logs
    # "processing" a moment before the job is claimed, so a job it began just
    # as the victim died can be pending in the database yet logged before.
    completed_later = {pk for pk in pending_at_kill if jobs[pk].status == "completed"}
    assert completed_later <= set(processed_ids(survivor))

    assert_outputs_in_bucket(s3_storage_settings, task_ids)
    assert_ledger_exact(account, task_ids)
    # Only the reaper failed anything: the killed job, and the tasks the
    # victim had already taken off the queue (Redis cannot hand them back).
    failed = [job for job in jobs.values() if job.status == RemovalJob.Status.FAILED]
    assert all("the charge was refunded" in job.error for job in failed), [j.error for j in failed]
