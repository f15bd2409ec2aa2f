from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Credits"

    def ready(self) -> None:
        from accounts.signals import signed_up
        from billing import services

        # A new sign-up's free credits, booked in the ledger.
        signed_up.connect(services.grant_signup_credits, dispatch_uid="billing.signup_credits")
