from django.urls import path

from billing import apis, views

urlpatterns = [
    path("api/usage", apis.UsageApi.as_view(), name="usage-api"),
    path("usage/", views.usage, name="usage"),
    path("usage/export.csv", views.usage_csv, name="usage-csv"),
]
