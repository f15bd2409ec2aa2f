from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from doors.option_fields import options_markdown, readme_with_options_table


class Command(BaseCommand):
    help = (
        "Print the README's table of output options, made from the option table "
        "(imaging/options.py); --write puts it into README.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--write", action="store_true", help="update README.md in place")

    def handle(self, *args, write: bool, **options):
        if not write:
            self.stdout.write(options_markdown())
            return
        readme = Path(settings.BASE_DIR) / "README.md"
        readme.write_text(readme_with_options_table(readme.read_text()))
        self.stdout.write(f"Wrote the options table into {readme}")
