"""PUBLIC_BASE_URL: behind a proxy, every absolute URL starts with it.

The proxy here is the test client sending its own Host (``testserver``,
as nginx sends its upstream's address); the service must answer with the
public address anyway: results' image_url, webhook payloads, the emailed
links and the low-balance email. Unset, URLs follow the request's Host.
"""

import json
import re
from datetime import UTC, datetime

import pytest
from django.core import mail
from rest_framework.test import APIClient

from accounts.services import add_member
from billing.services import send_low_balance_email
from tests.job_factory import completed_job
from webhooks.services import event_body

PUBLIC = "https://bg.example.com"


def with_email(member) -> None:
    member.user.email = "erin@example.com"
    member.user.save()


@pytest.fixture
def behind_a_proxy(settings):
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.SITE_URL = PUBLIC  # as revid/settings.py derives it
    settings.ALLOWED_HOSTS = ["bg.example.com"]
    return settings


@pytest.mark.weights
def test_results_urls_follow_the_requests_host_when_no_public_url_is_set(account, api_key):
    job = completed_job(account)
    client = APIClient()
    body = client.get(f"/api/get/{job.id}", HTTP_HOST="127.0.0.1:8010").json()
    assert body["result"]["image_url"] == f"http://127.0.0.1:8010/output/{job.id}_output.png"


@pytest.mark.weights
def test_results_urls_use_the_public_url_whatever_host_the_proxy_sends(behind_a_proxy, account):
    job = completed_job(account)
    body = APIClient().get(f"/api/get/{job.id}", HTTP_HOST="127.0.0.1:8000").json()
    assert body["result"]["image_url"] == f"{PUBLIC}/output/{job.id}_output.png"
    # A plain-http hop from the proxy is not redirected to https, nor refused.
    assert APIClient().get("/healthz").status_code == 200


@pytest.mark.weights
def test_webhook_payloads_use_the_public_url(behind_a_proxy, account):
    job = completed_job(account)
    body = json.loads(
        event_body(job=job, event_type="removal.completed", created_at=datetime.now(UTC))
    )
    assert body["data"]["result"]["image_url"] == f"{PUBLIC}/output/{job.id}_output.png"


def test_emailed_links_use_the_public_url(behind_a_proxy, client, db, mailoutbox):
    behind_a_proxy.SIGNUP_ENABLED = True
    client.post(
        "/accounts/signup/",
        {
            "email": "dora@example.com",
            "password1": "correct-horse-9",
            "password2": "correct-horse-9",
        },
        HTTP_HOST="10.0.0.5:8000",
    )
    assert len(mailoutbox) == 1
    link = re.search(r"https?://\S+", mailoutbox[0].body).group(0)
    assert link.startswith(f"{PUBLIC}/accounts/confirm-email/")


def test_the_low_balance_email_links_the_usage_page_at_the_public_url(behind_a_proxy, account):
    with_email(add_member(account=account, username="erin"))
    assert send_low_balance_email(account_id=account.pk, balance=10) == 1
    assert f"{PUBLIC}/usage/" in mail.outbox[0].body


def test_the_low_balance_email_links_site_url_when_no_public_url_is_set(settings, account):
    settings.SITE_URL = "http://127.0.0.1:8010"
    with_email(add_member(account=account, username="erin"))
    send_low_balance_email(account_id=account.pk, balance=10)
    assert "http://127.0.0.1:8010/usage/" in mail.outbox[0].body
