from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Credits"

    def ready(self) -> None:
        from accounts.signals import email_verified, signed_up
        from billing import services

        # A new sign-up's free credits: owed at once, booked in the ledger
        # when the address is verified.
        signed_up.connect(services.owe_signup_credits, dispatch_uid="billing.signup_credits")
        email_verified.connect(
            services.grant_signup_credits, dispatch_uid="billing.signup_credits_granted"
        )
