from django.db.models import QuerySet

from accounts.models import Account, ApiKey


def get_account_by_name(*, name: str) -> Account | None:
    return Account.objects.filter(name=name).first()


def account_for_user(*, user) -> Account | None:
    membership = getattr(user, "membership", None)
    return membership.account if membership is not None else None


def api_keys_for_account(*, account: Account) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(account=account).order_by("-created")


def account_summary(*, account: Account, price: int) -> dict:
    """Balance and price as the account's key holder sees them (read fresh)."""
    balance = Account.objects.values_list("credit_balance", flat=True).get(pk=account.pk)
    return {
        "account": account.name,
        "credit_balance": balance,
        "price_per_request": price,
        "requests_affordable": balance // price if price else None,
    }


def email_verification_pending(*, user) -> bool:
    """True for a user who signed up and has not verified an address yet.

    Users made by an administrator or a command have no allauth address
    record and are trusted as before.
    """
    from allauth.account.models import EmailAddress

    addresses = EmailAddress.objects.filter(user=user)
    return addresses.exists() and not addresses.filter(verified=True).exists()


def unverified_email_address(*, user) -> str:
    """The address a new verification link goes to: the user's primary one
    when unverified, else any unverified one; "" when there is none."""
    from allauth.account.models import EmailAddress

    address = (
        EmailAddress.objects.filter(user=user, verified=False).order_by("-primary", "pk").first()
    )
    return address.email if address else ""
