"""A deploy stops a worker mid-job and loses nothing.

A real worker is started the documented ways (`make worker`, and the
systemd unit shipped in docs/systemd/), with one worker process. It is
stopped while it runs a job, after its cluster has already taken the next
tasks off the queue (the ones a Redis broker cannot hand back), the way
each supervisor stops it:

- `make worker` under a supervisor that signals the whole process group
  (honcho, a terminal, `kill -- -PGID`): SIGTERM to every process of it;
- the systemd unit, with its ``KillMode=mixed``: SIGTERM to the main
  process only (SIGKILL to the rest only after TimeoutStopSec).

Either way: the running job completes (not failed, not refunded), the
tasks taken but not started are back in the broker, those never taken are
still there, no job was started twice, and the worker exits within its
grace; a worker started afterwards runs them all.
"""

import configparser
import contextlib
import os
import re
import shlex
import signal
import subprocess
import time

import pytest

from billing.models import LedgerEntry
from imaging.options import OutputOptions
from removal.models import RemovalJob
from tests.conftest import ROOT, subprocess_env, wait_for
from tests.e2e.test_make_run import descendants
from tests.job_factory import submitted_job
from tests.speed import photo_taking_at_least

pytestmark = [pytest.mark.e2e, pytest.mark.model]

UNIT = ROOT / "docs" / "systemd" / "revid-worker.service"
# How long the job in hand must run here (u2netp with alpha matting), so
# that queueing four more and seeing two of them taken fits inside it.
JOB_SECONDS = 4
QUEUED = 4
TAKEN_AHEAD = 2  # Q_QUEUE_LIMIT=1: one in the local queue, one in the pusher's hand
STARTUP = 240  # make + Django + django-q2 + u2netp warm-up, on a busy machine


def unit_service_section() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read(UNIT)
    return parser["Service"]


def unit_command() -> list[str]:
    """The unit's ExecStart, for this checkout instead of /srv/revid."""
    command = unit_service_section()["ExecStart"].replace("/srv/revid", str(ROOT))
    return shlex.split(command)


class Worker:
    def __init__(self, command: list[str], env: dict[str, str], log_path):
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop_like(self, supervisor: str) -> None:
        if supervisor == "group":
            os.killpg(self.process.pid, signal.SIGTERM)
        else:  # systemd's KillMode=mixed: the main process only
            self.process.send_signal(signal.SIGTERM)

    def clean_up(self) -> None:
        """Kills what is left of it (a failed test): its qcluster children
        run in process groups of their own, each led by its main process."""
        if self.process.poll() is None:
            for pid, _ in descendants(self.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self._log.close()


@pytest.fixture
def workers(transactional_db):
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.clean_up()


def queued_job_ids(broker: str, redis_url: str | None) -> list[str]:
    """The job id of every removal task waiting in the broker, not taken."""
    from django.utils import timezone
    from django_q.models import OrmQ
    from django_q.signing import SignedPackage

    if broker == "redis":
        import redis

        client = redis.Redis.from_url(redis_url)
        try:
            payloads = client.lrange("django_q:revid:q", 0, -1)
        finally:
            client.close()
        tasks = [SignedPackage.loads(payload) for payload in payloads]
    else:
        rows = OrmQ.objects.filter(key="revid", lock__lte=timezone.now())
        tasks = [row.task for row in rows]
    return [
        task["args"][0] for task in tasks if task["func"] == "removal.tasks.process_removal_job"
    ]


def status(job) -> str:
    return RemovalJob.objects.values_list("status", flat=True).get(pk=job.pk)


@pytest.mark.parametrize(
    ("how", "broker"),
    [("make worker", "redis"), ("systemd unit", "orm")],
)
def test_a_stopped_worker_finishes_its_job_and_hands_back_the_rest(
    request, workers, account, tmp_path, how, broker
):
    redis_url = request.getfixturevalue("redis_broker") if broker == "redis" else None
    matting = OutputOptions(alpha_matting=True)
    data, measured = photo_taking_at_least(JOB_SECONDS, model="u2netp", options=matting)
    job_timeout = max(60, round(8 * measured))
    env = subprocess_env(
        Q_WORKERS="1",
        Q_QUEUE_LIMIT="1",
        WARM_MODELS="u2netp",
        REMOVAL_JOB_TIMEOUT=str(job_timeout),
        **({"REDIS_URL": redis_url} if redis_url else {}),
    )
    env.pop("Q_CLUSTER_NAME", None)
    if how == "make worker":
        command = ["make", "--no-print-directory", "-o", "venv", "worker"]
        supervisor = "group"
    else:
        section = unit_service_section()
        assert section["KillMode"] == "mixed"
        command = unit_command()
        supervisor = "main process"

    running = submitted_job(account, data=data, model="u2netp", alpha_matting="true")
    worker = Worker(command, env, tmp_path / "worker.log")
    workers.append(worker)
    wait_for(
        lambda: status(running) == "processing",
        timeout=STARTUP,
        interval=0.05,
        message=f"the worker never started the job:\n{worker.log()[-3000:]}",
    )
    waiting = [submitted_job(account, model="u2netp", photo_name="coffee") for _ in range(QUEUED)]
    # The cluster takes the next tasks off the broker while its worker is busy.
    wait_for(
        lambda: len(queued_job_ids(broker, redis_url)) == QUEUED - TAKEN_AHEAD,
        timeout=30,
        interval=0.05,
        message="the cluster never took tasks ahead",
    )
    assert status(running) == "processing", f"the job took under {measured:.1f}s here"

    worker.stop_like(supervisor)
    stopped_at = time.monotonic()
    grace = job_timeout + max(1, 30 // 2) + 15  # WORKER_STOP_GRACE_SECONDS, as derived
    worker.process.wait(timeout=grace + 30)
    took = time.monotonic() - stopped_at
    log = worker.log()
    # make waits for its recipe, then dies of the SIGTERM it got itself.
    clean_exits = (0, -signal.SIGTERM) if how == "make worker" else (0,)
    assert worker.process.returncode in clean_exits, log[-3000:]
    assert took < grace, f"took {took:.0f}s to stop:\n{log[-3000:]}"
    assert "killing it" not in log
    queues = re.findall(r"Q Cluster \S+ \[(\S+)\] running\.", log)
    assert sorted(queue.split(":")[-2] if ":" in queue else queue for queue in queues) == [
        "housekeeping",
        "revid",
    ], log[-3000:]
    assert log.count("has stopped.") == 2, log[-3000:]  # both clusters, in order

    # The job in hand finished: completed, charged once, not refunded.
    running.refresh_from_db()
    assert running.status == RemovalJob.Status.COMPLETED, running.error
    kinds = LedgerEntry.objects.filter(job=running).values_list("kind", flat=True)
    assert list(kinds) == ["charge"]
    # The rest were never started, and every one of them is back in the queue.
    for job in waiting:
        job.refresh_from_db()
        assert (job.status, job.attempts, job.started_at) == ("pending", 0, None)
    assert sorted(queued_job_ids(broker, redis_url)) == sorted(str(job.pk) for job in waiting)

    # The next worker runs them.
    after = Worker(command, env, tmp_path / "worker-after.log")
    workers.append(after)
    wait_for(
        lambda: all(status(job) == "completed" for job in waiting),
        timeout=STARTUP,
        interval=0.5,
        message=f"the handed-back jobs never ran:\n{after.log()[-3000:]}",
    )
    assert all(job.refresh_from_db() or job.attempts == 1 for job in waiting)
    after.stop_like(supervisor)
    after.process.wait(timeout=grace + 30)
    assert after.process.returncode in clean_exits


def test_the_systemd_unit_gives_the_worker_longer_than_its_grace(settings):
    section = unit_service_section()
    assert section["KillMode"] == "mixed"
    assert int(section["TimeoutStopSec"]) > settings.WORKER_STOP_GRACE_SECONDS
    assert "revid.run_worker" in section["ExecStart"]
