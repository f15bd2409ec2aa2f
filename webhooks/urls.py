from django.urls import path

from webhooks import views

urlpatterns = [
    path("dashboard/webhooks/", views.save_settings, name="dashboard-webhook-settings"),
    path("dashboard/webhooks/rotate/", views.rotate_secret, name="dashboard-webhook-rotate"),
    path(
        "jobs/<uuid:task_id>/webhooks/<str:event_id>/resend/",
        views.resend_event,
        name="web-job-webhook-resend",
    ),
]
