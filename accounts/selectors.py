from django.db.models import QuerySet

from accounts.models import Account, ApiKey


def get_account_by_name(*, name: str) -> Account | None:
    return Account.objects.filter(name=name).first()


def account_for_user(*, user) -> Account | None:
    membership = getattr(user, "membership", None)
    return membership.account if membership is not None else None


def api_keys_for_account(*, account: Account) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(account=account).order_by("-created")
