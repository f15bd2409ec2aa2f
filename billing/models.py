from django.db import models


class LedgerEntry(models.Model):
    """One append-only movement of credits. Rows are never updated or deleted."""

    class Kind(models.TextChoices):
        GRANT = "grant", "Grant"
        CHARGE = "charge", "Charge"
        REFUND = "refund", "Refund"
        ADJUST = "adjust", "Adjustment"
        PURCHASE = "purchase", "Purchase"

    account = models.ForeignKey(
        "accounts.Account", on_delete=models.PROTECT, related_name="ledger_entries"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # Signed: grants and refunds are positive, charges negative.
    amount = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    job = models.ForeignKey(
        "removal.RemovalJob",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ledger_entries",
    )
    note = models.CharField(max_length=500, blank=True)
    # The outside event that caused this row (a Stripe Checkout Session for a
    # purchase, a charge's refund state for a refund adjustment). Unique, so
    # a replayed or concurrently delivered webhook cannot write it twice.
    external_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"
        constraints = [
            # A job is charged at most once and refunded at most once, even if
            # two workers (or a worker and the reaper) race to do it.
            models.UniqueConstraint(
                fields=["job", "kind"],
                condition=models.Q(job__isnull=False),
                name="one_ledger_entry_per_job_and_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+d} ({self.account})"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise RuntimeError("Ledger entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("Ledger entries are append-only.")


class CreditPack(models.Model):
    """A number of credits sold for a price, listed on the pricing page while active."""

    name = models.CharField(max_length=100)
    credits = models.PositiveIntegerField()
    # In the currency's minor unit (cents), as Stripe counts.
    price = models.PositiveIntegerField(help_text="In minor units, e.g. 900 for 9.00.")
    currency = models.CharField(max_length=3, default="eur", help_text="ISO code, e.g. eur.")
    active = models.BooleanField(default=True)
    ordering = models.PositiveSmallIntegerField(default=0, help_text="Lower comes first.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ordering", "price", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(credits__gt=0), name="pack_credits_positive"),
            models.CheckConstraint(condition=models.Q(price__gt=0), name="pack_price_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits} credits, {format_money(self.price, self.currency)})"

    def save(self, *args, **kwargs):
        self.currency = self.currency.lower()
        super().save(*args, **kwargs)

    @property
    def price_display(self) -> str:
        return format_money(self.price, self.currency)


class Purchase(models.Model):
    """A paid Stripe Checkout Session and the credits it granted (its ledger row)."""

    account = models.ForeignKey(
        "accounts.Account", on_delete=models.PROTECT, related_name="purchases"
    )
    pack = models.ForeignKey(CreditPack, on_delete=models.SET_NULL, null=True, blank=True)
    pack_name = models.CharField(max_length=100)
    credits = models.PositiveIntegerField()
    amount_paid = models.PositiveIntegerField(help_text="In minor units.")
    currency = models.CharField(max_length=3)
    checkout_session_id = models.CharField(max_length=255, unique=True)
    # Refund events carry the charge and its payment intent, not the session.
    payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    ledger_entry = models.OneToOneField(
        LedgerEntry, on_delete=models.PROTECT, related_name="purchase"
    )
    # Refunds: how much money came back, how many credits that takes back,
    # and how many of those could not be taken because they were spent.
    amount_refunded = models.PositiveIntegerField(default=0)
    credits_reclaimed = models.PositiveIntegerField(default=0)
    credits_shortfall = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.pack_name} for {self.account} ({self.paid_display})"

    @property
    def paid_display(self) -> str:
        return format_money(self.amount_paid, self.currency)

    @property
    def refunded_display(self) -> str:
        return format_money(self.amount_refunded, self.currency)

    @property
    def needs_review(self) -> bool:
        return self.credits_shortfall > 0


class RejectedPayment(models.Model):
    """A paid Checkout Session that granted nothing, kept for an administrator.

    Credits come from our pack, never from the event; a session whose
    amount or currency is not the pack's price (another integration on the
    same Stripe account, a price changed mid-checkout, a forged session)
    is recorded here instead. Refund it in Stripe, or grant the credits by
    hand from the account's page.
    """

    checkout_session_id = models.CharField(max_length=255, unique=True)
    account = models.ForeignKey(
        "accounts.Account", on_delete=models.PROTECT, related_name="rejected_payments"
    )
    pack = models.ForeignKey(CreditPack, on_delete=models.SET_NULL, null=True, blank=True)
    amount_paid = models.PositiveIntegerField(help_text="In minor units.")
    currency = models.CharField(max_length=3)
    payment_intent_id = models.CharField(max_length=255, blank=True)
    event_id = models.CharField(max_length=255, blank=True)
    reason = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.checkout_session_id} for {self.account} ({self.paid_display})"

    @property
    def paid_display(self) -> str:
        return format_money(self.amount_paid, self.currency)


# Currencies Stripe counts in whole units (no cents).
ZERO_DECIMAL_CURRENCIES = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)


def format_money(amount: int, currency: str) -> str:
    """900, "eur" -> "9.00 EUR"."""
    code = currency.upper()
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if currency.lower() in ZERO_DECIMAL_CURRENCIES:
        return f"{sign}{amount} {code}"
    return f"{sign}{amount // 100}.{amount % 100:02d} {code}"
