"""Sign-up (django-allauth): email + password, verification before the
first API key, free credits through the ledger, password reset."""

import os
import re
import subprocess
import sys

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

from accounts.models import Account, ApiKey
from accounts.services import add_member
from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from billing.services import open_account
from tests.conftest import ROOT

PASSWORD = "correct-horse-battery"


@pytest.fixture
def signup_open(settings, db):
    # allauth rate-limits emails per address in the cache; each test starts afresh.
    cache.clear()
    settings.SIGNUP_ENABLED = True
    settings.SIGNUP_FREE_CREDITS = 100
    return settings


def sign_up(client: Client, email: str = "carol@example.com"):
    return client.post(
        "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    )


def link_in(message) -> str:
    return re.search(r"https?://\S+", message.body).group(0)


def test_sign_up_is_closed_unless_enabled(client, db, settings):
    settings.SIGNUP_ENABLED = False
    assert b"Sign-up is closed" in client.get("/accounts/signup/").content
    sign_up(client)
    assert not get_user_model().objects.exists()
    assert b"Create an account" not in client.get("/accounts/login/").content


def test_a_sign_up_makes_an_account_with_the_free_credits_and_emails_a_link(
    client, signup_open, mailoutbox
):
    response = sign_up(client)
    assert response.status_code == 302

    user = get_user_model().objects.get(email="carol@example.com")
    account = user.membership.account
    assert account.name == "carol@example.com"
    assert account.credit_balance == 100
    grant = LedgerEntry.objects.get(account=account)
    assert (grant.kind, grant.amount, grant.note) == ("grant", 100, "Sign-up credits")
    assert ledger_sum(account=account) == 100
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["carol@example.com"]
    assert "/accounts/confirm-email/" in link_in(mailoutbox[0])


def test_no_free_credits_by_default(client, signup_open, mailoutbox):
    signup_open.SIGNUP_FREE_CREDITS = 0
    sign_up(client)
    account = Account.objects.get(name="carol@example.com")
    assert account.credit_balance == 0
    assert not LedgerEntry.objects.filter(account=account).exists()


def test_an_account_name_taken_by_an_administrator_gets_a_suffix(client, signup_open):
    open_account(name="carol@example.com")
    sign_up(client)
    user = get_user_model().objects.get(email="carol@example.com")
    assert user.membership.account.name == "carol@example.com (2)"


def test_the_first_api_key_waits_for_the_verified_email(client, signup_open, mailoutbox):
    sign_up(client)
    dashboard = client.get("/dashboard/")
    assert b"Verify your email address" in dashboard.content

    refused = client.post("/dashboard/keys/", {"name": "laptop"})
    assert refused.status_code == 403
    assert b"Verify your email address before creating an API key" in refused.content
    assert not ApiKey.objects.exists()

    confirm_url = link_in(mailoutbox[0])
    assert client.get(confirm_url).status_code == 200
    client.post(confirm_url)
    assert EmailAddress.objects.get(email="carol@example.com").verified

    created = client.post("/dashboard/keys/", {"name": "laptop"})
    assert created.status_code == 200
    assert ApiKey.objects.filter(name="laptop").exists()


def test_users_made_by_an_administrator_need_no_verification(client, account):
    member = add_member(account=account, username="alice", password=PASSWORD)
    client.force_login(member.user)
    assert client.post("/dashboard/keys/", {"name": "server"}).status_code == 200


def test_a_signed_up_user_logs_in_with_email_on_the_usual_login_page(client, signup_open):
    sign_up(client)
    client.logout()
    response = client.post(
        "/accounts/login/", {"username": "carol@example.com", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert client.get("/dashboard/").status_code == 200


def test_a_forgotten_password_is_reset_through_the_emailed_link(client, signup_open, mailoutbox):
    sign_up(client)
    client.logout()
    mailoutbox.clear()
    client.post("/accounts/password/reset/", {"email": "carol@example.com"})
    assert len(mailoutbox) == 1
    reset_url = link_in(mailoutbox[0])

    form = client.get(reset_url, follow=True)
    assert form.status_code == 200
    new_password = "another-horse-staple"
    done = client.post(
        form.redirect_chain[-1][0] if form.redirect_chain else reset_url,
        {"password1": new_password, "password2": new_password},
    )
    assert done.status_code == 302

    assert client.login(username="carol@example.com", password=new_password)


def test_the_login_page_offers_sign_up_and_password_reset_when_open(client, signup_open):
    page = client.get("/accounts/login/").content
    assert b'href="/accounts/signup/"' in page
    assert b'href="/accounts/password/reset/"' in page
    signup = client.get("/accounts/signup/")
    # The site's own layout, not allauth's bare one.
    assert b"app.css" in signup.content
    assert b'class="card login-card' in signup.content


def settings_in_a_fresh_process(**env: str) -> str:
    """SIGNUP_ENABLED, SIGNUP_FREE_CREDITS and the email backend as a process
    started with ``env`` (and nothing else of ours) reads them."""
    code = (
        "from django.conf import settings as s; "
        "print(s.SIGNUP_ENABLED, s.SIGNUP_FREE_CREDITS, s.EMAIL_BACKEND.rsplit('.', 2)[-2])"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SIGNUP_", "EMAIL_"))}
    clean.pop("DJANGO_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "revid.settings", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_sign_up_is_on_in_development_and_off_in_production_by_default():
    assert settings_in_a_fresh_process(DJANGO_DEBUG="1") == "True 0 console"
    assert settings_in_a_fresh_process(DJANGO_DEBUG="0") == "False 0 console"
    assert (
        settings_in_a_fresh_process(
            DJANGO_DEBUG="0",
            SIGNUP_ENABLED="1",
            SIGNUP_FREE_CREDITS="50",
            EMAIL_HOST="smtp.example.com",
        )
        == "True 50 smtp"
    )
