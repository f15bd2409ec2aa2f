"""The doors' routes: the seed API, remove.bg's API, the web page and the dashboard."""

from django.urls import path

from doors import batches, dashboard, metrics, removebg, seed_api, usage, usage_api, web

urlpatterns = [
    # The seed API (API key).
    path(
        "paid/image/remove/background",
        seed_api.RemoveBackgroundApi.as_view(),
        name="remove-background",
    ),
    path(
        "paid/image/remove/background/batch",
        batches.BatchSubmitApi.as_view(),
        name="remove-background-batch",
    ),
    path("api/batch/<str:batch_id>", batches.BatchStatusApi.as_view(), name="batch-status"),
    path(
        "api/batch/<str:batch_id>/download",
        batches.BatchDownloadApi.as_view(),
        name="batch-download",
    ),
    path("api/get/<str:task_id>", seed_api.TaskStatusApi.as_view(), name="task-status"),
    path("api/models", seed_api.ModelListApi.as_view(), name="model-list"),
    path("output/<str:filename>", seed_api.DownloadOutputApi.as_view(), name="download-output"),
    path("healthz", seed_api.healthz, name="healthz"),
    path("readyz", seed_api.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    # remove.bg's dialect (API key).
    path("v1.0/removebg", removebg.RemoveBgApi.as_view(), name="removebg"),
    path("v1.0/account", removebg.RemoveBgAccountApi.as_view(), name="removebg-account"),
    # Usage: the ledger and the jobs it paid for (API key, or session login).
    path("api/usage", usage_api.UsageApi.as_view(), name="usage-api"),
    path("usage/", usage.usage, name="usage"),
    path("usage/export.csv", usage.usage_csv, name="usage-csv"),
    # The web page (session login).
    path("", web.upload_page, name="upload"),
    path("jobs/", web.submit_upload, name="web-submit"),
    path("jobs/batch/", web.submit_batch_upload, name="web-submit-batch"),
    path("jobs/<uuid:task_id>/", web.job_page, name="web-job"),
    path("jobs/<uuid:task_id>/status", web.job_status, name="web-job-status"),
    path("jobs/<uuid:task_id>/input", web.job_input, name="web-job-input"),
    # The dashboard (session login), and allauth's sign-up page behind our
    # limit per client address (allauth's own URL, later in revid/urls.py,
    # is never reached).
    path("accounts/signup/", dashboard.signup, name="signup"),
    path("dashboard/", dashboard.dashboard, name="dashboard"),
    path("dashboard/keys/", dashboard.create_key, name="dashboard-create-key"),
    path("dashboard/keys/<str:prefix>/revoke/", dashboard.revoke_key, name="dashboard-revoke-key"),
]
