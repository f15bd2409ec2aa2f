from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import apis


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
]
