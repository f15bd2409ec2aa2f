"""Jobs in a given state, made through the real submit service (so they are
charged) and the model's guarded transitions, without running a model."""

from datetime import timedelta

from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from removal.models import RemovalJob
from removal.services import fail_job, submit_job
from tests.images import encode, photo, photo_bytes


def submitted_job(account, *, photo_name: str = "astronaut", model: str = "u2netp") -> RemovalJob:
    upload = SimpleUploadedFile(f"{photo_name}.jpg", photo_bytes(photo_name), "image/jpeg")
    return submit_job(account=account, upload=upload, model_name=model)


def completed_job(account, **kwargs) -> RemovalJob:
    job = submitted_job(account, **kwargs)
    assert job.mark_processing()
    cutout = encode(photo("astronaut").convert("RGBA"), "PNG")
    job.output_file.save(job.output_filename, ContentFile(cutout), save=False)
    assert job.mark_completed(
        output_size=len(cutout),
        elapsed_seconds=1.234,
        expires_at=timezone.now() + timedelta(hours=24),
    )
    return job


def failed_job(account, *, error: str = "Processing timed out after 60 seconds") -> RemovalJob:
    job = submitted_job(account)
    assert job.mark_processing()
    assert fail_job(job=job, error=error)
    return job
