from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from releases.models import ApiToken
from releases.models.tokens import SCOPES


class Command(BaseCommand):
    help = "Create an API token for a user; prints the token once (only its hash is stored)."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("username")
        parser.add_argument("--name", default="ci")
        parser.add_argument("--scope", action="append", dest="scopes", choices=sorted(SCOPES), required=True,
                            help="repeat for several scopes")

    def handle(self, username: str, name: str, scopes: list[str], **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        _, raw = ApiToken.issue(user, name, scopes)
        self.stdout.write(raw)
