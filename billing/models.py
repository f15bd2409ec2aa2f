from django.db import models


class LedgerEntry(models.Model):
    """One append-only movement of credits. Rows are never updated or deleted."""

    class Kind(models.TextChoices):
        GRANT = "grant", "Grant"
        CHARGE = "charge", "Charge"
        REFUND = "refund", "Refund"
        ADJUST = "adjust", "Adjustment"

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
