from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import get_account_by_name
from webhooks.services import rotate_secret, settings_for


class Command(BaseCommand):
    help = (
        "Print an account's webhook signing secret (whsec_...) on the last line; "
        "--rotate makes a new one first (the old one keeps signing for 24 hours)."
    )

    def add_arguments(self, parser):
        parser.add_argument("account", help="the account's name")
        parser.add_argument("--rotate", action="store_true", help="make a new secret first")

    def handle(self, *args, account, rotate, **options):
        found = get_account_by_name(name=account)
        if found is None:
            raise CommandError(f"No account named {account!r}.")
        if rotate:
            webhook_settings = rotate_secret(account=found)
            self.stderr.write(
                f"Rotated the webhook secret of {found.name!r}; the previous one keeps "
                f"signing until {webhook_settings.previous_secret_expires_at:%Y-%m-%d %H:%M} UTC."
            )
        else:
            webhook_settings = settings_for(account=found)
        self.stdout.write(webhook_settings.secret)
