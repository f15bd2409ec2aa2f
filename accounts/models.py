from django.conf import settings
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey


class Account(models.Model):
    """A paying customer. Credits belong to the account, not to a key or a user."""

    name = models.CharField(max_length=100, unique=True)
    # A cache of the ledger's sum, changed only by billing.services in the
    # same transaction as the ledger row, under select_for_update.
    credit_balance = models.BigIntegerField(default=0, editable=False)
    # Set when the low-balance email went out, cleared when credits are
    # added back above the threshold: one email per crossing (billing.services).
    low_balance_notified = models.BooleanField(default=False, editable=False)
    # Free credits an account made by a sign-up gets when its email address
    # is verified (SIGNUP_FREE_CREDITS at sign-up); 0 once granted, and for
    # accounts an administrator made.
    signup_credits_due = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(credit_balance__gte=0), name="account_balance_not_negative"
            )
        ]

    def __str__(self) -> str:
        return self.name


class Member(models.Model):
    """Ties a Django user (who logs in to the web page) to one account."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership"
    )
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="members")

    def __str__(self) -> str:
        return f"{self.user} @ {self.account}"


class ApiKey(AbstractAPIKey):
    """An API key: only its prefix (to find it) and a SHA-512 hash are stored."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="api_keys")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
