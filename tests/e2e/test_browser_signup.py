"""Sign-up with the emailed verification link, and buying a credit pack up
to the Stripe redirect, in a real headless Chromium (Debian's package)
against the live server and the local Stripe-compatible server."""

import re

import pytest
from django.core.cache import cache

from accounts.services import add_member
from billing.models import CreditPack
from tests.e2e.conftest import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_a_visitor_signs_up_verifies_the_emailed_link_and_creates_a_key(
    live_server, page, settings, mailoutbox
):
    cache.clear()
    settings.SIGNUP_ENABLED = True
    settings.SIGNUP_FREE_CREDITS = 100

    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Email").fill("dora@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    # The answer a known address would get too: no credits, no login yet.
    page.wait_for_url(f"{live_server.url}/accounts/confirm-email/")
    assert "Check your email" in page.inner_text("main")

    # Logging in with the password works before the address is verified,
    # with nothing to spend and no key to make.
    page.goto(f"{live_server.url}/accounts/login/?next=/dashboard/")
    page.get_by_label("Username").fill("dora@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/dashboard/")
    assert page.get_by_test_id("dashboard-balance").inner_text() == "0"
    # No key form until the address is verified: what to do instead.
    assert page.get_by_role("button", name="Create key").count() == 0
    assert "Verify your email address to create API keys" in page.inner_text("#verify-email")
    assert page.get_by_test_id("new-key").count() == 0

    assert len(mailoutbox) == 1
    link = re.search(r"https?://\S+", mailoutbox[0].body).group(0)
    assert link.startswith(live_server.url)
    page.goto(link)
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_load_state()

    # The free credits came with the verified address.
    page.goto(f"{live_server.url}/dashboard/")
    assert page.get_by_test_id("dashboard-balance").inner_text() == "100"
    page.get_by_label("New key name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-key").inner_text()
    assert len(key) > 20


def test_a_customer_buys_a_pack_up_to_the_stripe_checkout_page(
    live_server, page, stripe_settings, account
):
    CreditPack.objects.create(name="Starter", credits=500, price=900, currency="eur")
    add_member(account=account, username="alice", password=PASSWORD)

    page.goto(f"{live_server.url}/accounts/login/?next=/dashboard/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Buy credits").click()
    page.wait_for_url(f"{live_server.url}/pricing/")
    assert "9.00 EUR" in page.inner_text("#packs")

    page.get_by_role("button", name="Buy Starter").click()
    page.wait_for_url(re.compile(re.escape(stripe_settings) + r"/_config/checkout/cs_test_\w+"))
    assert page.inner_text("#amount") == "900 eur"
