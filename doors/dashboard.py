"""The customer dashboard: balance, recent jobs and the account's API keys;
and the sign-up page's limit per client address.

Keys are created and revoked through ``accounts.services``; a new key's
plaintext is rendered in the response to the POST that made it and never
stored, so it is shown exactly once.
"""

import ipaddress
import math
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince
from django.views.decorators.http import require_GET, require_POST
from rest_framework.throttling import SimpleRateThrottle

from accounts.guards import account_required
from accounts.models import Account, ApiKey
from accounts.selectors import (
    api_keys_for_account,
    email_verification_pending,
    unverified_email_address,
)
from accounts.services import create_api_key, revoke_api_key
from doors.throttling import take_submission_slot
from removal.selectors import jobs_for_account

RECENT_JOBS = 20
KEY_NAME_MAX_LENGTH = 50
VERIFY_EMAIL_MESSAGE = (
    "Verify your email address before creating an API key: open the link we emailed you, "
    "or send a new link with the button under API keys."
)


def describe_age(moment: datetime) -> str:
    """'just now' rather than '0 minutes ago'."""
    if timezone.now() - moment < timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment)} ago"


def _render_dashboard(
    request: HttpRequest,
    account: Account,
    *,
    new_key: str | None = None,
    new_key_name: str = "",
    key_error: str = "",
    status: int = 200,
) -> HttpResponse:
    jobs = list(jobs_for_account(account=account, limit=RECENT_JOBS))
    for job in jobs:
        job.age = describe_age(job.created_at)
    api_keys = list(api_keys_for_account(account=account))
    for api_key in api_keys:
        api_key.last_used = describe_age(api_key.last_used_at) if api_key.last_used_at else ""
    price = settings.REMOVAL_PRICE_CREDITS
    context = {
        "account": account,
        "email_unverified": email_verification_pending(user=request.user),
        "unverified_email": unverified_email_address(user=request.user),
        "price": price,
        "images_left": account.credit_balance // price if price else "Unlimited",
        "jobs": jobs,
        "api_keys": api_keys,
        "new_key": new_key,
        "new_key_name": new_key_name,
        "key_error": key_error,
        "key_name_max_length": KEY_NAME_MAX_LENGTH,
    }
    response = render(request, "accounts/dashboard.html", context, status=status)
    if new_key:
        # The only copy of the key: keep it out of every cache.
        response["Cache-Control"] = "no-store"
    return response


@require_GET
@account_required(title="Dashboard")
def dashboard(request: HttpRequest) -> HttpResponse:
    return _render_dashboard(request, request.account)


@require_POST
@account_required(title="Dashboard")
def create_key(request: HttpRequest) -> HttpResponse:
    account = request.account
    if email_verification_pending(user=request.user):
        # The page shows no form then; a stale tab or a second window still
        # gets the dashboard back with what to do, not a refusal page.
        messages.info(request, VERIFY_EMAIL_MESSAGE)
        return redirect(reverse("dashboard") + "#api-keys")
    name = request.POST.get("name", "").strip()
    if len(name) > KEY_NAME_MAX_LENGTH:
        return _render_dashboard(
            request,
            account,
            key_error=f"A key name can be at most {KEY_NAME_MAX_LENGTH} characters long.",
            status=400,
        )
    api_key, plaintext = create_api_key(account=account, name=name or "default")
    return _render_dashboard(request, account, new_key=plaintext, new_key_name=api_key.name)


@require_POST
@account_required(answer="message")
def revoke_key(request: HttpRequest, prefix: str) -> HttpResponse:
    # Keys are addressed by their public prefix: the primary key embeds the
    # hash, which never leaves the server.
    api_key = ApiKey.objects.filter(account=request.account, prefix=prefix).first()
    if api_key is None:
        messages.error(request, "That API key does not exist in your account.")
        return redirect("dashboard")
    if api_key.revoked:
        messages.info(request, f"The key “{api_key.name}” was already revoked.")
    else:
        revoke_api_key(api_key=api_key)
        messages.success(
            request,
            f"The key “{api_key.name}” ({api_key.prefix}…) is revoked and stops working now.",
        )
    return redirect("dashboard")


def _client_network(request: HttpRequest) -> str:
    """The client's address as sign-ups are counted: allauth's view of it
    (REMOTE_ADDR, or X-Forwarded-For as far as TRUSTED_PROXY_COUNT trusts
    it), and an IPv6 address by its /64, which one customer gets whole."""
    from allauth.account.adapter import get_adapter

    address = get_adapter(request).get_client_ip(request)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:80]
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def signup(request: HttpRequest) -> HttpResponse:
    """allauth's sign-up page, after SIGNUP_RATE_LIMIT.

    Every sign-up attempt (a POST, whatever its address) takes a slot of
    its client address in the same database rows as the API's rate limit,
    so all web processes share one count. A refused attempt creates nothing.
    """
    from allauth.account.views import signup as allauth_signup

    if request.method == "POST" and settings.SIGNUP_ENABLED and settings.SIGNUP_RATE_LIMIT:
        limit, period = SimpleRateThrottle.parse_rate(None, settings.SIGNUP_RATE_LIMIT)
        state = take_submission_slot(
            key=f"signup:{_client_network(request)}", limit=limit, period=period
        )
        if state.wait:
            response = render(
                request,
                "account/signup_limited.html",
                {"minutes": math.ceil(state.wait / 60)},
                status=429,
            )
            response["Retry-After"] = str(math.ceil(state.wait))
            return response
    return allauth_signup(request)
