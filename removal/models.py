import uuid

from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone


def input_upload_to(instance: "RemovalJob", filename: str) -> str:
    # The client's file name is never used on disk; only our own extension.
    return f"inputs/{instance.id}.{instance.input_format or 'bin'}"


def background_upload_to(instance: "RemovalJob", filename: str) -> str:
    # Our own name and extension, like the input's.
    extension = filename.rsplit(".", 1)[-1] if "." in filename else "bin"
    return f"backgrounds/{instance.id}.{extension}"


def output_upload_to(instance: "RemovalJob", filename: str) -> str:
    return f"outputs/{instance.output_filename}"


class RemovalJob(models.Model):
    """One background removal, from the accepted upload to the stored PNG.

    State moves only forward: pending -> processing -> completed | failed
    (pending -> failed too, if a job can never start). Every transition is a
    conditional UPDATE on the current state, so two workers that receive
    the same task (a redelivery after a crash) cannot both run it, and a
    finished job can never be reopened.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    class Origin(models.TextChoices):
        API = "api", "API"
        WEB = "web", "Web page"
        REMOVEBG = "removebg", "remove.bg API"
        BATCH = "batch", "Batch"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(
        "accounts.Account", on_delete=models.PROTECT, related_name="removal_jobs"
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    model_name = models.CharField(max_length=40)
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=300, default="Background removal started")
    error = models.TextField(blank=True)

    original_filename = models.CharField(max_length=255, blank=True)
    input_format = models.CharField(max_length=10, blank=True)
    input_file = models.FileField(upload_to=input_upload_to, max_length=255, blank=True)
    input_size = models.PositiveBigIntegerField(default=0)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    # The background image (options["bg_image"] is its SHA-256), stored with
    # the input for the worker and deleted with it when the job expires.
    background_file = models.FileField(upload_to=background_upload_to, max_length=255, blank=True)

    # Which door the request came through (the seed API, the web page, the
    # remove.bg dialect): shown to the customer and the admin, never a rule.
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.API)
    # The output options as applied (``imaging.options.OutputOptions``);
    # empty for the seed's defaults.
    options = models.JSONField(default=dict, blank=True)
    webhook_url = models.URLField(max_length=2000, blank=True, default="")

    output_file = models.FileField(upload_to=output_upload_to, max_length=255, blank=True)
    output_format = models.CharField(max_length=5, default="png")
    output_size = models.PositiveBigIntegerField(null=True, blank=True)
    output_width = models.PositiveIntegerField(null=True, blank=True)
    output_height = models.PositiveIntegerField(null=True, blank=True)
    # The subject's box in output pixels: {"top", "left", "width", "height"}.
    foreground = models.JSONField(null=True, blank=True)
    elapsed_seconds = models.FloatField(null=True, blank=True)
    # Where the worker's time went, in seconds: reading the input, each
    # pipeline stage, writing the output (``removal.services.process_job``).
    stage_seconds = models.JSONField(null=True, blank=True)

    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    files_deleted_at = models.DateTimeField(null=True, blank=True)
    # A batch's item: its batch, its place in the request, and when it was
    # handed to the queue (a batch queues a few items at a time, so other
    # customers' images are not stuck behind it; None: not yet).
    batch = models.ForeignKey(
        "removal.Batch", on_delete=models.CASCADE, null=True, blank=True, related_name="jobs"
    )
    batch_index = models.PositiveIntegerField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="one_job_per_idempotency_key",
            )
        ]
        indexes = [models.Index(fields=["status", "started_at"])]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def output_filename(self) -> str:
        return f"{self.id}_output.{self.output_format}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.COMPLETED, self.Status.FAILED)

    @property
    def is_expired(self) -> bool:
        return self.files_deleted_at is not None or (
            self.expires_at is not None and self.expires_at <= timezone.now()
        )

    # --- which files may still be served -------------------------------------
    # One rule each, read by the API, the web page, the dashboard and the
    # admin: a file is served while it exists and the job has not expired
    # (the expiry schedule deletes files a little after ``expires_at``).
    @property
    def has_output(self) -> bool:
        """A completed job with a stored result (expired or not)."""
        return self.status == self.Status.COMPLETED and bool(self.output_file.name)

    @property
    def has_live_output(self) -> bool:
        return self.has_output and not self.is_expired

    @property
    def has_live_input(self) -> bool:
        return bool(self.input_file.name) and not self.is_expired

    # --- guarded transitions ------------------------------------------------
    def _transition(self, *, from_states: list[str], **changes) -> bool:
        updated = RemovalJob.objects.filter(pk=self.pk, status__in=from_states).update(**changes)
        if updated:
            for field, value in changes.items():
                if not isinstance(value, models.expressions.Combinable):
                    setattr(self, field, value)
        return bool(updated)

    def mark_processing(self, *, stale_before=None, queued: bool = False) -> bool:
        """Claims the job for this worker. False if someone else has it.

        A job stuck in processing since before ``stale_before`` (its worker
        died) may be claimed again. ``queued``: the claim also counts as the
        job's place in its batch's queue (``queued_at``), in the same
        statement, so a worker killed between the two leaves no item that
        counts as queued but has no task.
        """
        now = timezone.now()
        changes = dict(
            status=self.Status.PROCESSING,
            progress=5,
            message="Starting...",
            started_at=now,
            attempts=models.F("attempts") + 1,
        )
        if queued:
            changes["queued_at"] = Coalesce(models.F("queued_at"), models.Value(now))
        claimed = RemovalJob.objects.filter(pk=self.pk, status=self.Status.PENDING).update(
            **changes
        )
        if not claimed and stale_before is not None:
            claimed = RemovalJob.objects.filter(
                pk=self.pk, status=self.Status.PROCESSING, started_at__lt=stale_before
            ).update(**changes)
        if claimed:
            self.refresh_from_db()
        return bool(claimed)

    def set_progress(self, progress: int, message: str) -> None:
        self._transition(
            from_states=[self.Status.PROCESSING], progress=progress, message=message[:300]
        )

    def mark_completed(
        self,
        *,
        output_size: int,
        elapsed_seconds: float,
        expires_at,
        output_width: int | None = None,
        output_height: int | None = None,
        foreground: dict | None = None,
        stage_seconds: dict[str, float] | None = None,
    ) -> bool:
        return self._transition(
            from_states=[self.Status.PROCESSING],
            status=self.Status.COMPLETED,
            progress=100,
            message="Background removal completed successfully",
            output_file=self.output_file.name,
            output_size=output_size,
            output_width=output_width,
            output_height=output_height,
            foreground=foreground,
            elapsed_seconds=round(elapsed_seconds, 3),
            stage_seconds=stage_seconds,
            completed_at=timezone.now(),
            expires_at=expires_at,
        )

    def mark_failed(self, *, error: str, unstarted_only: bool = False) -> bool:
        """Fails the job; with ``unstarted_only``, only if no worker has claimed it."""
        return self._transition(
            from_states=[self.Status.PENDING]
            if unstarted_only
            else [self.Status.PENDING, self.Status.PROCESSING],
            status=self.Status.FAILED,
            progress=0,
            message=f"Background removal failed: {error}"[:300],
            error=error,
            completed_at=timezone.now(),
        )


class SubmissionRateBucket(models.Model):
    """The recent submission times of one API key, for REMOVAL_RATE_LIMIT.

    Kept in the database so every web process of a deployment (several
    gunicorn workers, several machines, the embedded default included)
    counts against the same limit; the row is locked while it is read and
    written, so two processes never both take the last slot.
    """

    key = models.CharField(max_length=100, primary_key=True)
    hits = models.JSONField(default=list)  # UNIX times, oldest first, at most the limit's count

    def __str__(self) -> str:
        return self.key


class Batch(models.Model):
    """Many images in one request: one charge transaction, one ZIP, one event.

    Its accepted items are ``RemovalJob``s (``jobs``), each charged, run,
    refunded and expired like any job; the items refused before the charge
    are kept in ``refused`` (index, filename, error, code) for the status
    and the ZIP's manifest. ``ended_at`` is set once, when its last item
    ended, and then ``batch_ended`` is announced.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(
        "accounts.Account", on_delete=models.PROTECT, related_name="removal_batches"
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    model_name = models.CharField(max_length=40)
    options = models.JSONField(default=dict, blank=True)
    output_format = models.CharField(max_length=5, default="png")
    webhook_url = models.URLField(max_length=2000, blank=True, default="")
    item_count = models.PositiveIntegerField(default=0)
    refused = models.JSONField(default=list, blank=True)
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="one_batch_per_idempotency_key",
            )
        ]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"Batch {self.id} ({self.item_count} images)"

    @property
    def has_ended(self) -> bool:
        return self.ended_at is not None
