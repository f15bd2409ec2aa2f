from django.core.management.base import BaseCommand, CommandError

from accounts.services import create_api_key
from billing.services import open_account
from revid.errors import ApplicationError


class Command(BaseCommand):
    help = "Create an account with credits and one API key; the key is the last line of output."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--credits", type=int, default=0)
        parser.add_argument("--key-name", default="default")

    def handle(self, *args, name, credits, key_name, **options):
        if credits < 0:
            raise CommandError("--credits must not be negative")
        try:
            account = open_account(name=name, credits=credits)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        _, key = create_api_key(account=account, name=key_name)
        self.stderr.write(
            f"Created account {account.name!r} with {account.credit_balance} credits."
        )
        self.stderr.write("Its API key (shown once, store it now):")
        self.stdout.write(key)
