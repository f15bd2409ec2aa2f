"""Webhooks end to end: HTTP submit, the real removal worker and model, and
the webhook cluster (its own qcluster process) calling a real receiver on
loopback."""

import time

import pytest
import requests
from django.utils import timezone
from standardwebhooks import Webhook

from removal.models import RemovalJob
from tests.conftest import wait_for
from tests.images import photo_bytes
from tests.webhooks.receiver import Receiver
from webhooks.models import WebhookEvent
from webhooks.services import settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.model]


@pytest.fixture
def receiver(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    hook = Receiver()
    yield hook
    hook.stop()


@pytest.fixture
def start_both(start_worker, live_server):
    """The removal cluster and the webhook cluster, as `make run` starts them."""

    def start():
        env = {
            "OUTBOUND_ALLOWED_NETWORKS": "127.0.0.1/32",
            "SITE_URL": live_server.url,
            "WARM_MODELS": "u2netp",
        }
        removal = start_worker(**env)
        webhooks = start_worker(Q_CLUSTER_NAME="webhooks", **env)
        return removal, webhooks

    return start


def submit(live_server, api_key, hook_url: str) -> str:
    response = requests.post(
        f"{live_server.url}/paid/image/remove/background",
        headers={"x-api-key": api_key},
        files={"file": ("photo.jpg", photo_bytes("astronaut"), "image/jpeg")},
        data={"model": "u2netp", "webhook_url": hook_url},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    # Until the submit path stores webhook_url itself, name it here, before
    # any worker runs (no worker is started yet).
    RemovalJob.objects.filter(pk=task_id).update(webhook_url=hook_url)
    return task_id


def received_event(hook: Receiver, task_id: str):
    def arrived():
        return hook.received[0] if hook.received else None

    # Generous for a busy machine: the model on a small photo plus the queue.
    return wait_for(arrived, timeout=120, interval=0.05, message=f"no webhook for {task_id}")


def test_a_completed_job_is_announced_promptly_with_a_verifiable_event(
    live_server, start_both, account, api_key, receiver
):
    task_id = submit(live_server, api_key, receiver.url)
    _, webhook_worker = start_both()

    received = received_event(receiver, task_id)
    arrived_at = timezone.now()

    payload = Webhook(settings_for(account=account).secret).verify(received.body, received.headers)
    assert payload["type"] == "removal.completed"
    assert payload["task_id"] == task_id
    status = requests.get(f"{live_server.url}/api/get/{task_id}", timeout=10).json()
    assert payload["data"] == status
    assert status["result"]["image_url"] == f"{live_server.url}/output/{task_id}_output.png"
    job = RemovalJob.objects.get(pk=task_id)
    latency = (arrived_at - job.completed_at).total_seconds()
    # Queued on commit, taken by an idle webhook worker polling every 50 ms.
    assert latency < 5, f"the webhook came {latency:.2f}s after the job completed"
    event = WebhookEvent.objects.get(job_id=task_id)
    assert received.headers["webhook-id"] == event.id
    wait_for(
        lambda: WebhookEvent.objects.get(pk=event.pk).status == WebhookEvent.Status.DELIVERED,
        timeout=30,
        message="the event was never marked delivered",
    )
    assert f"webhook-{event.id}" in webhook_worker.log()


def test_a_failed_job_sends_removal_failed(live_server, start_both, account, api_key, receiver):
    task_id = submit(live_server, api_key, receiver.url)
    job = RemovalJob.objects.get(pk=task_id)
    job.input_file.storage.delete(job.input_file.name)  # the worker cannot read it
    start_both()

    received = received_event(receiver, task_id)

    payload = Webhook(settings_for(account=account).secret).verify(received.body, received.headers)
    assert payload["type"] == "removal.failed"
    assert payload["data"]["status"] == "failed"
    assert payload["data"]["result"]["error"]
    # Exactly one event, however long we wait for a duplicate.
    time.sleep(1)
    assert len(receiver.received) == 1
