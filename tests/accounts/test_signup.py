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
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from accounts.models import Account, ApiKey
from accounts.services import add_member, create_account
from billing.models import LedgerEntry
from billing.selectors import ledger_sum
from billing.services import open_account
from removal.models import RemovalJob, SubmissionRateBucket
from tests.conftest import ROOT, django_start_error
from tests.images import solid_png

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


def test_a_sign_up_makes_an_account_without_credits_and_emails_a_link(
    client, signup_open, mailoutbox
):
    response = sign_up(client)
    # Not logged in yet: the same answer as for a known address (below).
    assert (response.status_code, response["Location"]) == (302, "/accounts/confirm-email/")
    assert b"Check your email" in client.get(response["Location"]).content
    assert client.get("/dashboard/").status_code == 302

    user = get_user_model().objects.get(email="carol@example.com")
    account = user.membership.account
    assert account.name == "carol@example.com"
    assert account.credit_balance == 0
    assert not LedgerEntry.objects.filter(account=account).exists()
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["carol@example.com"]
    assert "/accounts/confirm-email/" in link_in(mailoutbox[0])


def test_the_free_credits_come_once_the_address_is_verified(client, signup_open, mailoutbox):
    sign_up(client)
    confirm_url = link_in(mailoutbox[0])
    response = client.post(confirm_url)
    assert response.status_code == 302
    account = Account.objects.get(name="carol@example.com")
    assert account.credit_balance == 100 == ledger_sum(account=account)
    grant = LedgerEntry.objects.get(account=account)
    assert (grant.kind, grant.amount, grant.note) == ("grant", 100, "Sign-up credits")
    # Logged in by the link, with the credits on the dashboard.
    assert b'data-testid="dashboard-balance">100<' in client.get("/dashboard/").content

    # Confirming again, or verifying a second address, grants nothing more.
    client.post(confirm_url)
    user = get_user_model().objects.get(email="carol@example.com")
    second = EmailAddress.objects.create(user=user, email="carol@work.example", verified=False)
    mailoutbox.clear()
    cache.clear()
    send_email_confirmation_for(client, second)
    client.post(link_in(mailoutbox[0]))
    assert EmailAddress.objects.get(email="carol@work.example").verified
    account.refresh_from_db()
    assert account.credit_balance == 100 == ledger_sum(account=account)


def send_email_confirmation_for(client: Client, address: EmailAddress) -> None:
    response = client.post("/accounts/email/", {"action_send": "", "email": address.email})
    assert response.status_code == 302, response.content


def test_no_free_credits_by_default(client, signup_open, mailoutbox):
    signup_open.SIGNUP_FREE_CREDITS = 0
    sign_up(client)
    client.post(link_in(mailoutbox[0]))
    account = Account.objects.get(name="carol@example.com")
    assert account.credit_balance == 0
    assert not LedgerEntry.objects.filter(account=account).exists()


def test_an_administrators_user_verifying_an_address_gets_no_free_credits(
    client, signup_open, account, mailoutbox
):
    member = add_member(account=account, username="alice", password=PASSWORD)
    client.force_login(member.user)
    client.post("/accounts/email/", {"action_add": "", "email": "alice@example.com"})
    client.post(link_in(mailoutbox[0]))
    assert EmailAddress.objects.get(email="alice@example.com").verified
    account.refresh_from_db()
    assert account.credit_balance == 1000 == ledger_sum(account=account)


def page_text(response) -> str:
    """The page as a visitor sees it, without the per-visit CSRF token."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())


def answers(email: str, password2: str = PASSWORD) -> tuple:
    """What a fresh visitor learns from signing up with ``email``."""
    visitor = Client()
    response = visitor.post(
        "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": password2}
    )
    shown = visitor.get(response["Location"]) if response.status_code == 302 else response
    return (
        response.status_code,
        response.get("Location"),
        sorted(response.cookies),
        shown.status_code,
        page_text(shown).replace(email, "EMAIL"),
    )


def test_a_known_and_an_unknown_address_get_the_same_answer(signup_open, mailoutbox):
    known = add_member(account=create_account(name="acme"), username="dave").user
    known.email = "dave@example.com"
    known.save()
    EmailAddress.objects.create(user=known, email="dave@example.com", verified=True, primary=True)

    assert answers("dave@example.com") == answers("erin@example.com")
    assert b"already registered" not in answers("dave@example.com")[-1].encode()
    # No second user for the known address; its owner is told by email instead.
    assert get_user_model().objects.filter(email__iexact="dave@example.com").count() == 1
    by_address = {message.to[0]: message for message in mailoutbox}
    assert "already" in by_address["dave@example.com"].body.lower()
    assert "/accounts/confirm-email/" in link_in(by_address["erin@example.com"])


def test_a_known_and_an_unknown_address_get_the_same_error_for_a_bad_password(signup_open, account):
    add_member(account=account, username="alice", password=PASSWORD)
    get_user_model().objects.filter(username="alice").update(email="alice@example.com")
    known = answers("alice@example.com", password2="something else")
    assert known == answers("frank@example.com", password2="something else")
    assert known[0] == 200 and "You must type the same password each time" in known[-1]
    assert not get_user_model().objects.filter(email="frank@example.com").exists()


def test_an_account_name_taken_by_an_administrator_gets_a_suffix(client, signup_open):
    open_account(name="carol@example.com")
    sign_up(client)
    user = get_user_model().objects.get(email="carol@example.com")
    assert user.membership.account.name == "carol@example.com (2)"


def test_the_first_api_key_and_the_credits_wait_for_the_verified_email(
    client, signup_open, mailoutbox
):
    sign_up(client)
    # Logging in works before the address is verified ...
    assert (
        client.post(
            "/accounts/login/", {"username": "carol@example.com", "password": PASSWORD}
        ).status_code
        == 302
    )
    dashboard = client.get("/dashboard/")
    assert b"Verify your email address" in dashboard.content
    # No key form to fill in vain: what to do instead, and a button to resend the link.
    assert b'action="/dashboard/keys/"' not in dashboard.content
    assert b"Resend the verification link" in dashboard.content

    # ... no key to make (a stale form gets the dashboard back, saying why) and
    # no credit to spend on the web page.
    refused = client.post("/dashboard/keys/", {"name": "laptop"})
    assert refused.status_code == 302
    assert refused["Location"] == "/dashboard/#api-keys"
    shown = client.get(refused["Location"])
    assert b"Verify your email address before creating an API key" in shown.content
    assert not ApiKey.objects.exists()
    upload = client.post(
        "/jobs/", {"file": SimpleUploadedFile("a.png", solid_png()), "model": "u2netp"}
    )
    assert upload.status_code == 402, upload.content
    assert not RemovalJob.objects.exists()

    confirm_url = link_in(mailoutbox[0])
    assert client.get(confirm_url).status_code == 200
    client.post(confirm_url)
    assert EmailAddress.objects.get(email="carol@example.com").verified

    created = client.post("/dashboard/keys/", {"name": "laptop"})
    assert created.status_code == 200
    assert ApiKey.objects.filter(name="laptop").exists()
    assert Account.objects.get(name="carol@example.com").credit_balance == 100


def test_users_made_by_an_administrator_need_no_verification(client, account):
    member = add_member(account=account, username="alice", password=PASSWORD)
    client.force_login(member.user)
    assert client.post("/dashboard/keys/", {"name": "server"}).status_code == 200


def test_a_signed_up_user_logs_in_with_email_on_the_usual_login_page(client, signup_open):
    sign_up(client)
    response = client.post(
        "/accounts/login/", {"username": "carol@example.com", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert client.get("/dashboard/").status_code == 200


def test_a_forgotten_password_is_reset_through_the_emailed_link(client, signup_open, mailoutbox):
    sign_up(client)
    mailoutbox.clear()
    cache.clear()  # allauth's one-email-per-address cool-down
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


# --- sign-ups per client address, counted in the database ----------------------


def sign_up_from(address: str, email: str):
    cache.clear()  # nothing kept in a process's cache may count
    return Client(REMOTE_ADDR=address).post(
        "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    )


def test_sign_ups_per_client_address_are_limited_in_the_shared_store(signup_open):
    signup_open.SIGNUP_RATE_LIMIT = "3/hour"
    for n in range(3):
        assert sign_up_from("203.0.113.5", f"farm{n}@example.com").status_code == 302
    refused = sign_up_from("203.0.113.5", "farm3@example.com")
    assert refused.status_code == 429
    assert b"Too many sign-ups from your network" in refused.content
    assert int(refused["Retry-After"]) > 3000
    assert not get_user_model().objects.filter(email="farm3@example.com").exists()
    # Known or not, an address is counted and refused the same way.
    assert sign_up_from("203.0.113.5", "farm0@example.com").status_code == 429
    # The count is a database row, as for the API's rate limit.
    assert len(SubmissionRateBucket.objects.get(key="signup:203.0.113.5").hits) == 3
    assert sign_up_from("198.51.100.7", "other@example.com").status_code == 302
    # A page view is no sign-up.
    assert Client(REMOTE_ADDR="203.0.113.5").get("/accounts/signup/").status_code == 200


def test_an_ipv6_network_counts_as_one_address(signup_open):
    signup_open.SIGNUP_RATE_LIMIT = "2/hour"
    assert sign_up_from("2001:db8:1:2::10", "v6a@example.com").status_code == 302
    assert sign_up_from("2001:db8:1:2:ffff::1", "v6b@example.com").status_code == 302
    assert sign_up_from("2001:db8:1:2::99", "v6c@example.com").status_code == 429
    assert sign_up_from("2001:db8:1:3::10", "v6d@example.com").status_code == 302


def test_an_empty_limit_turns_it_off(signup_open):
    signup_open.SIGNUP_RATE_LIMIT = ""
    for n in range(3):
        assert sign_up_from("203.0.113.9", f"many{n}@example.com").status_code == 302
    assert not SubmissionRateBucket.objects.filter(key__startswith="signup:").exists()


@pytest.mark.parametrize("rate", ["5", "5/fortnight", "0/hour", "lots"])
def test_a_malformed_limit_stops_the_start(rate):
    assert "SIGNUP_RATE_LIMIT must look like 60/minute" in django_start_error(
        {"SIGNUP_RATE_LIMIT": rate}
    )


def test_behind_a_trusted_proxy_the_forwarded_client_address_counts(signup_open):
    signup_open.SIGNUP_RATE_LIMIT = "1/hour"
    signup_open.ALLAUTH_TRUSTED_PROXY_COUNT = 1

    def via_proxy(client_address: str, email: str):
        cache.clear()
        return Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=client_address).post(
            "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD}
        )

    assert via_proxy("203.0.113.20", "p1@example.com").status_code == 302
    assert via_proxy("203.0.113.21", "p2@example.com").status_code == 302
    assert via_proxy("203.0.113.20", "p3@example.com").status_code == 429
    # Without trusting it, the header is anyone's to send: the proxy's address counts.
    signup_open.ALLAUTH_TRUSTED_PROXY_COUNT = 0
    assert via_proxy("203.0.113.22", "p4@example.com").status_code == 302
    assert via_proxy("203.0.113.23", "p5@example.com").status_code == 429
