from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.selectors import get_account_by_name
from accounts.services import add_member, create_api_key
from billing.services import open_account

DEMO_NAME = "demo"


class Command(BaseCommand):
    help = "Create the demo account on first run and print its API key once."

    def handle(self, *args, **options):
        account = get_account_by_name(name=DEMO_NAME)
        if account is not None:
            self.stdout.write(
                f"Demo account exists ({account.credit_balance} credits); its key was printed "
                "when it was created. Make another with: .venv/bin/python manage.py "
                "create_account NAME --credits N"
            )
            return
        account = open_account(name=DEMO_NAME, credits=settings.DEMO_ACCOUNT_CREDITS)
        _, key = create_api_key(account=account, name="demo")
        add_member(account=account, username="demo", password="demo-password")
        line = "=" * 72
        self.stdout.write(line)
        self.stdout.write(f"Demo account created with {account.credit_balance} credits.")
        # SITE_URL: `make run` sets it from its PORT (or PUBLIC_BASE_URL's).
        self.stdout.write(f"Web login: demo / demo-password   ({settings.SITE_URL}/)")
        self.stdout.write("API key (shown only this once):")
        self.stdout.write(f"    {key}")
        self.stdout.write(line)
