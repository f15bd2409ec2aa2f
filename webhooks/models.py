"""Signed webhooks: each account's endpoint and secret, the events we owe
it, and every attempt to deliver them."""

import base64
import json
import secrets
from datetime import datetime

from django.db import models
from django.utils import timezone

SECRET_PREFIX = "whsec_"


def new_signing_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def new_event_id() -> str:
    """The ``webhook-id``: the same on every retry, so receivers de-duplicate."""
    return f"msg_{secrets.token_hex(16)}"


class WebhookSettings(models.Model):
    """An account's default webhook URL and its signing secret.

    After a rotation the previous secret keeps signing (beside the new one)
    until ``previous_secret_expires_at``, so a receiver that has not yet
    switched, or a retry of an older event, still verifies.
    """

    account = models.OneToOneField(
        "accounts.Account", on_delete=models.CASCADE, related_name="webhook_settings"
    )
    url = models.URLField("default webhook URL", max_length=2000, blank=True, default="")
    secret = models.CharField(max_length=100, default=new_signing_secret)
    previous_secret = models.CharField(max_length=100, blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "webhook settings"
        verbose_name_plural = "webhook settings"

    def __str__(self) -> str:
        return f"Webhooks of {self.account}"

    def signing_secrets(self, *, now: datetime | None = None) -> list[str]:
        """The current secret, then the previous one while it is still valid."""
        now = now or timezone.now()
        result = [self.secret]
        if (
            self.previous_secret
            and self.previous_secret_expires_at is not None
            and self.previous_secret_expires_at > now
        ):
            result.append(self.previous_secret)
        return result


class WebhookEvent(models.Model):
    """One event owed to a customer: a job ended, or a batch did.

    Created once per job or batch (unique job or batch, and type) with its body frozen, so
    every retry sends the same bytes under the same ``webhook-id``.
    ``next_attempt_at`` is when an attempt is due; a worker claims an
    attempt by moving it forward with a conditional UPDATE (a lease), so two
    workers never send the same attempt, and an attempt whose worker died
    is due again once the lease ends.
    """

    class Type(models.TextChoices):
        COMPLETED = "removal.completed", "removal.completed"
        FAILED = "removal.failed", "removal.failed"
        BATCH_COMPLETED = "batch.completed", "batch.completed"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    id = models.CharField(primary_key=True, max_length=40, default=new_event_id, editable=False)
    account = models.ForeignKey(
        "accounts.Account", on_delete=models.CASCADE, related_name="webhook_events"
    )
    job = models.ForeignKey(
        "removal.RemovalJob",
        on_delete=models.CASCADE,
        related_name="webhook_events",
        null=True,
        blank=True,
    )
    batch = models.ForeignKey(
        "removal.Batch",
        on_delete=models.CASCADE,
        related_name="webhook_events",
        null=True,
        blank=True,
    )
    type = models.CharField(max_length=40, choices=Type.choices)
    url = models.URLField(max_length=2000)
    # The exact JSON text sent, frozen at creation (a JSONField would let
    # PostgreSQL reorder the keys between attempts).
    body = models.TextField()
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["job", "type"], name="one_webhook_event_per_job_end"),
            models.UniqueConstraint(
                fields=["batch", "type"], name="one_webhook_event_per_batch_end"
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.id} {self.type}"

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


class WebhookDelivery(models.Model):
    """One attempt to deliver an event: what was sent where, and what came back."""

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    attempt = models.PositiveSmallIntegerField()
    url = models.URLField(max_length=2000)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True, default="")
    next_retry_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Empty while the attempt runs (or if its worker died during it).
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-attempt"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "attempt"], name="one_delivery_per_attempt")
        ]

    def __str__(self) -> str:
        return f"{self.event_id} attempt {self.attempt}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300
