"""The web page's routes (session login), apart from the API's (API key)."""

from django.urls import path

from removal import views

urlpatterns = [
    path("", views.upload_page, name="upload"),
    path("jobs/", views.submit_upload, name="web-submit"),
    path("jobs/<uuid:task_id>/", views.job_page, name="web-job"),
    path("jobs/<uuid:task_id>/status", views.job_status, name="web-job-status"),
    path("jobs/<uuid:task_id>/input", views.job_input, name="web-job-input"),
]
