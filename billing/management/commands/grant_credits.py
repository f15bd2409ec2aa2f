from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import get_account_by_name
from billing.services import grant_credits
from revid.errors import ApplicationError


class Command(BaseCommand):
    help = "Add credits to an account through the ledger."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("credits", type=int)
        parser.add_argument("--note", default="Granted from the command line")

    def handle(self, *args, name, credits, note, **options):
        account = get_account_by_name(name=name)
        if account is None:
            raise CommandError(f"No account named {name!r}")
        try:
            grant_credits(account=account, amount=credits, note=note)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"{account.name}: balance {account.credit_balance}")
