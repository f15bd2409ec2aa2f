from django.urls import path

from billing import views

urlpatterns = [
    path("pricing/", views.pricing, name="pricing"),
    path("billing/checkout/<int:pack_id>/", views.checkout, name="billing-checkout"),
    path("billing/checkout/success/", views.checkout_success, name="billing-checkout-success"),
    path("billing/checkout/cancel/", views.checkout_cancel, name="billing-checkout-cancel"),
    path("billing/stripe/webhook", views.stripe_webhook, name="billing-stripe-webhook"),
]
