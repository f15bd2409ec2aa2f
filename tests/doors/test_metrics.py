"""GET /metrics: scraped and parsed with prometheus-client's own parser."""

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from billing.services import open_account
from removal.models import RemovalJob
from tests.conftest import wait_for
from tests.images import photo_bytes
from tests.job_factory import completed_job, failed_job, submitted_job
from tests.speed import job_seconds, model_load_seconds

TOKEN = "metrics-token-for-tests-0123456789"


def scrape(client: Client, **headers) -> dict[str, dict]:
    """{family name: {(label values...): value}} from one scrape."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    families = {}
    for family in text_string_to_metric_families(response.content.decode()):
        samples = families.setdefault(family.name, {})
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return families


def value(families, family: str, sample: str | None = None, **labels) -> float:
    samples = families.get(family, {})
    return samples.get((sample or family, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    return {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


def test_it_needs_the_bearer_token_when_one_is_set(db, token):
    client = Client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", **token).status_code == 200


def test_without_a_token_it_answers_loopback_in_debug_only(db, settings):
    settings.METRICS_TOKEN = ""
    settings.DEBUG = False
    assert Client().get("/metrics").status_code == 403
    settings.DEBUG = True
    assert Client().get("/metrics").status_code == 200  # the test client is 127.0.0.1
    assert Client(REMOTE_ADDR="203.0.113.9").get("/metrics").status_code == 403


def test_it_counts_jobs_by_status_model_and_door_and_the_queue(account, token):
    before = scrape(Client(), **token)
    completed_job(account)
    failed_job(account)
    pending = submitted_job(account)
    RemovalJob.objects.filter(pk=pending.pk).update(
        created_at=pending.created_at.replace(year=pending.created_at.year - 1)
    )

    after = scrape(Client(), **token)

    for status in ("completed", "failed", "pending"):
        labels = {"status": status, "model": "u2netp", "door": "api"}
        assert value(after, "revid_jobs", **labels) == value(before, "revid_jobs", **labels) + 1
    assert value(after, "revid_queue_depth") == 1
    assert value(after, "revid_queue_oldest_pending_seconds") > 364 * 24 * 3600


def test_it_reports_credits_charged_and_refunded_from_the_ledger(account, token):
    completed_job(account)
    failed_job(account)

    families = scrape(Client(), **token)

    assert value(families, "revid_credits_charged", "revid_credits_charged_total") == 50
    assert value(families, "revid_credits_refunded", "revid_credits_refunded_total") == 25


@pytest.mark.e2e
@pytest.mark.model
def test_a_job_run_by_another_process_shows_in_the_histograms(start_worker, token):
    """A real qcluster process observes the job; this process scrapes it."""
    account = open_account(name="scraped", credits=100)
    before = scrape(Client(), **token)
    labels = {"model": "u2netp", "door": "api", "status": "completed"}
    count = "revid_job_seconds_count"
    start_worker()
    job = submitted_job(account)

    wait_for(
        lambda: RemovalJob.objects.get(pk=job.pk).is_finished,
        timeout=20 * job_seconds(photo_bytes("astronaut"), model="u2netp")
        + 10 * model_load_seconds("u2netp")
        + 30,
        message="the worker never finished the job",
    )
    after = scrape(Client(), **token)

    assert value(after, "revid_job_seconds", count, **labels) == (
        value(before, "revid_job_seconds", count, **labels) + 1
    )
    stage = {"stage": "model"}
    assert value(after, "revid_job_stage_seconds", "revid_job_stage_seconds_count", **stage) > (
        value(before, "revid_job_stage_seconds", "revid_job_stage_seconds_count", **stage)
    )


@pytest.mark.model
def test_the_example_dashboard_only_queries_metrics_this_service_exports(account, token):
    """docs/grafana-dashboard.json stays true to /metrics (after one real job)."""
    import json
    import re

    from django.conf import settings

    from removal.tasks import process_removal_job

    assert process_removal_job(str(submitted_job(account).pk)) == "completed"
    exported = set()
    response = Client().get("/metrics", **token).content.decode()
    for family in text_string_to_metric_families(response):
        exported.add(family.name)
        exported.update(sample.name for sample in family.samples)
    dashboard = json.loads((settings.BASE_DIR / "docs" / "grafana-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\brevid_[a-z_]+", target["expr"])
    }
    assert queried and queried <= exported, queried - exported
