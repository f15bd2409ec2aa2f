"""python manage.py webhook_secret ACCOUNT [--rotate]."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from webhooks.services import settings_for

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("webhook_secret", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip().splitlines()[-1]


def test_it_prints_the_accounts_secret_on_the_last_line(account):
    printed = run("acme")
    assert printed.startswith("whsec_")
    assert printed == settings_for(account=account).secret
    assert run("acme") == printed


def test_rotate_prints_a_new_secret_and_keeps_the_old_one_signing(account):
    old = run("acme")
    new = run("acme", "--rotate")
    assert new != old
    assert settings_for(account=account).signing_secrets() == [new, old]


def test_it_refuses_an_unknown_account(db):
    with pytest.raises(CommandError, match="No account named 'nobody'"):
        run("nobody")
