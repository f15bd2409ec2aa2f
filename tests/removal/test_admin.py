"""Removal jobs in the admin: filters, search by task id, thumbnails, read-only."""

import pytest

from removal.models import RemovalJob
from tests.images import photo_bytes
from tests.job_factory import completed_job, failed_job, submitted_job

pytestmark = pytest.mark.weights

CHANGELIST = "/admin/removal/removaljob/"


def listed(admin_client, query: str = "") -> str:
    response = admin_client.get(f"{CHANGELIST}{query}")
    assert response.status_code == 200
    # Task ids appear only in the result rows (the filters name accounts).
    return response.content.decode()


def test_it_filters_jobs_by_status_model_and_account(admin_client, account, other_account):
    done = completed_job(account)
    failed = failed_job(account)
    theirs = submitted_job(other_account, model="u2net")
    by_status = listed(admin_client, "?status__exact=failed")
    assert str(failed.id) in by_status and str(done.id) not in by_status
    by_model = listed(admin_client, "?model_name=u2net")
    assert str(theirs.id) in by_model and str(done.id) not in by_model
    by_account = listed(admin_client, f"?account__id__exact={other_account.pk}")
    assert str(theirs.id) in by_account and str(failed.id) not in by_account


def test_it_finds_a_job_by_its_task_id(admin_client, account):
    wanted = submitted_job(account)
    other = submitted_job(account)
    found = listed(admin_client, f"?q={wanted.id}")
    assert str(wanted.id) in found and str(other.id) not in found


def test_a_malformed_task_id_finds_nothing_without_an_error(admin_client, account):
    job = submitted_job(account)
    assert str(job.id) not in listed(admin_client, "?q=not-a-uuid")


def test_it_shows_input_and_output_thumbnails(admin_client, account):
    job = completed_job(account)
    html = listed(admin_client)
    assert f"/admin/removal/removaljob/{job.id}/input/" in html
    assert f"/output/{job.id}_output.png" in html
    image = admin_client.get(f"/admin/removal/removaljob/{job.id}/input/")
    assert image["Content-Type"] == "image/jpeg"
    assert b"".join(image.streaming_content) == photo_bytes("astronaut")


def test_customers_cannot_fetch_inputs_through_the_admin(client, account, django_user_model):
    job = submitted_job(account)
    user = django_user_model.objects.create_user("alice", password="pw-alice-123")
    client.force_login(user)
    response = client.get(f"/admin/removal/removaljob/{job.id}/input/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_job_page_shows_the_error_timings_and_charges_read_only(admin_client, account):
    job = failed_job(account, error="Processing timed out after 60 seconds")
    response = admin_client.get(f"{CHANGELIST}{job.id}/change/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Processing timed out after 60 seconds" in html
    assert "Started at" in html and "Completed at" in html
    assert "Charge -25, Refund +25" in html
    assert 'name="_save"' not in html


def test_jobs_cannot_be_added_changed_or_deleted(admin_client, account):
    job = submitted_job(account)
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    change = admin_client.post(f"{CHANGELIST}{job.id}/change/", {"status": "completed"})
    assert change.status_code == 403
    delete = admin_client.post(f"{CHANGELIST}{job.id}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    assert RemovalJob.objects.get().status == RemovalJob.Status.PENDING
