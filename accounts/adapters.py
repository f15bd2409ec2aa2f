"""django-allauth's hooks: whether sign-up is open, what a sign-up makes,
and the free credits when an address is verified.

allauth owns the forms, emails and tokens; the account, its membership and
its free credits are made by ``accounts.services``, as for any other account.
"""

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.signals import email_confirmed
from django.conf import settings
from django.dispatch import receiver
from django.http import HttpRequest

from accounts.services import create_account_for_user, email_address_verified


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return settings.SIGNUP_ENABLED

    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            create_account_for_user(user=user)
        return user


@receiver(email_confirmed, dispatch_uid="accounts.email_verified")
def announce_verified_email(sender, request, email_address, **kwargs) -> None:
    email_address_verified(user=email_address.user)
