import io

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Account, ApiKey, Member
from billing.selectors import ledger_sum

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_account_prints_a_working_key_on_the_last_line(anon_client):
    out, _ = run("create_account", "Globex", "--credits", "300")
    key = out.strip().splitlines()[-1]
    account = Account.objects.get(name="Globex")
    assert account.credit_balance == 300 == ledger_sum(account=account)
    assert ApiKey.objects.get_from_key(key).account == account
    anon_client.credentials(HTTP_X_API_KEY=key)
    assert anon_client.get("/api/get/00000000-0000-4000-8000-000000000000").status_code == 404


def test_create_account_refuses_a_duplicate_name():
    run("create_account", "Globex")
    with pytest.raises(CommandError):
        run("create_account", "Globex")


def test_grant_credits_goes_through_the_ledger():
    run("create_account", "Globex", "--credits", "10")
    out, _ = run("grant_credits", "Globex", "90")
    account = Account.objects.get(name="Globex")
    assert account.credit_balance == 100 == ledger_sum(account=account)
    assert "100" in out
    with pytest.raises(CommandError):
        run("grant_credits", "Nobody", "5")


def test_the_demo_account_is_created_once_and_its_key_printed_once(settings):
    settings.DEMO_ACCOUNT_CREDITS = 500
    first, _ = run("ensure_demo_account")
    second, _ = run("ensure_demo_account")
    keys = [line.strip() for line in first.splitlines() if line.startswith("    ")]
    assert len(keys) == 1
    account = Account.objects.get(name="demo")
    assert ApiKey.objects.get_from_key(keys[0]).account == account
    assert account.credit_balance == 500
    assert Member.objects.get(user__username="demo").account == account
    assert keys[0] not in second
    assert ApiKey.objects.count() == 1
