from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from accounts.models import Account, ApiKey, Member
from billing.models import LedgerEntry
from billing.services import grant_credits
from revid.errors import ApplicationError


@transaction.atomic
def create_account(*, name: str, credits: int = 0, note: str = "Initial credits") -> Account:
    name = name.strip()
    if not name:
        raise ApplicationError("An account needs a name.", code="invalid_name")
    if Account.objects.filter(name=name).exists():
        raise ApplicationError(f"An account named {name!r} already exists.", code="account_exists")
    account = Account.objects.create(name=name)
    if credits:
        grant_credits(account=account, amount=credits, note=note)
        account.refresh_from_db()
    return account


def create_api_key(*, account: Account, name: str = "default") -> tuple[ApiKey, str]:
    """Returns the key object and the plaintext key, which is never stored."""
    return ApiKey.objects.create_key(account=account, name=name or "default")


def revoke_api_key(*, api_key: ApiKey) -> ApiKey:
    """Revocation is one-way: a revoked key never works again."""
    if not api_key.revoked:
        ApiKey.objects.filter(pk=api_key.pk).update(revoked=True)
        api_key.revoked = True
    return api_key


@transaction.atomic
def add_member(*, account: Account, username: str, password: str | None = None) -> Member:
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=username)
    if password is not None:
        user.set_password(password)
        user.save()
    member, _ = Member.objects.update_or_create(user=user, defaults={"account": account})
    return member


@transaction.atomic
def create_account_for_user(*, user) -> Account:
    """The account of a user who signed up, named after their email.

    No credits yet: SIGNUP_FREE_CREDITS is owed until the address is
    verified (``grant_signup_credits``), so an unverified sign-up has none
    to spend and a made-up address earns nothing.
    """
    base = (user.email or user.get_username()).strip()[:90]
    name, suffix = base, 1
    # An administrator may already have named an account after this address.
    while Account.objects.filter(name=name).exists():
        suffix += 1
        name = f"{base} ({suffix})"
    account = create_account(name=name)
    Account.objects.filter(pk=account.pk).update(signup_credits_due=settings.SIGNUP_FREE_CREDITS)
    account.signup_credits_due = settings.SIGNUP_FREE_CREDITS
    Member.objects.create(user=user, account=account)
    return account


def grant_signup_credits(*, user) -> LedgerEntry | None:
    """Grants the sign-up credits owed to ``user``'s account, once (an email
    address was verified). None when nothing is owed: already granted, or an
    account an administrator made.

    Steps: lock the account row, read what is owed, grant it through the
    ledger and clear it in the same transaction, so two verifications at
    once grant it once.
    """
    membership = Member.objects.filter(user=user).first()
    if membership is None:
        return None
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=membership.account_id)
        due = account.signup_credits_due
        if due <= 0:
            return None
        Account.objects.filter(pk=account.pk).update(signup_credits_due=0)
        return grant_credits(account=account, amount=due, note="Sign-up credits")
