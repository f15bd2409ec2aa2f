"""django-allauth's hooks: whether sign-up is open, and what a sign-up makes.

allauth owns the forms, emails and tokens; the account, its membership and
its free credits are made by ``accounts.services``, as for any other account.
"""

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest

from accounts.services import create_account_for_user


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return settings.SIGNUP_ENABLED

    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            create_account_for_user(user=user)
        return user
