from django.urls import path

from billing import apis, views

urlpatterns = [
    path("api/usage", apis.UsageApi.as_view(), name="usage-api"),
    path("usage/", views.usage, name="usage"),
    path("usage/export.csv", views.usage_csv, name="usage-csv"),
    path("pricing/", views.pricing, name="pricing"),
    path("billing/checkout/<int:pack_id>/", views.checkout, name="billing-checkout"),
    path("billing/checkout/success/", views.checkout_success, name="billing-checkout-success"),
    path("billing/checkout/cancel/", views.checkout_cancel, name="billing-checkout-cancel"),
    path("billing/stripe/webhook", views.stripe_webhook, name="billing-stripe-webhook"),
]
