from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import apis, views
from webhooks import views as webhook_views


def signup_enabled() -> bool:
    # A callable, so the template reads the setting at render time.
    return settings.SIGNUP_ENABLED


urlpatterns = [
    path("api/account", apis.AccountApi.as_view(), name="account"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            template_name="accounts/login.html",
            redirect_authenticated_user=True,
            extra_context={"signup_enabled": signup_enabled},
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # allauth's page behind our limit per client address (allauth's own URL
    # comes later in revid/urls.py and is never reached).
    path("accounts/signup/", views.signup, name="signup"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/keys/", views.create_key, name="dashboard-create-key"),
    path("dashboard/keys/<str:prefix>/revoke/", views.revoke_key, name="dashboard-revoke-key"),
    path("dashboard/webhooks/", webhook_views.save_settings, name="dashboard-webhook-settings"),
    path(
        "dashboard/webhooks/rotate/", webhook_views.rotate_secret, name="dashboard-webhook-rotate"
    ),
    path(
        "jobs/<uuid:task_id>/webhooks/<str:event_id>/resend/",
        webhook_views.resend_event,
        name="web-job-webhook-resend",
    ),
]
