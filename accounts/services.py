from django.contrib.auth import get_user_model
from django.db import transaction

from accounts import signals
from accounts.models import Account, ApiKey, Member
from revid.errors import ApplicationError


@transaction.atomic
def create_account(*, name: str) -> Account:
    """A new account at 0 credits (credits come through the ledger:
    ``billing.services.open_account`` creates and grants in one go)."""
    name = name.strip()
    if not name:
        raise ApplicationError("An account needs a name.", code="invalid_name")
    if Account.objects.filter(name=name).exists():
        raise ApplicationError(f"An account named {name!r} already exists.", code="account_exists")
    return Account.objects.create(name=name)


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

    Announces ``signals.signed_up`` in the same transaction; billing
    answers it by owing the account the sign-up credits, which it grants
    when the address is verified (``email_address_verified``)."""
    base = (user.email or user.get_username()).strip()[:90]
    name, suffix = base, 1
    # An administrator may already have named an account after this address.
    while Account.objects.filter(name=name).exists():
        suffix += 1
        name = f"{base} ({suffix})"
    account = create_account(name=name)
    Member.objects.create(user=user, account=account)
    signals.signed_up.send(sender=Account, account=account, user=user)
    account.refresh_from_db()
    return account


def email_address_verified(*, user) -> None:
    """A user verified an email address (allauth's link): announces
    ``signals.email_verified`` with their account; billing grants the
    sign-up credits still owed to it, if any."""
    membership = Member.objects.filter(user=user).select_related("account").first()
    if membership is not None:
        signals.email_verified.send(sender=Account, account=membership.account, user=user)
