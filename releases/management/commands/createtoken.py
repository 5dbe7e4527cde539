import re
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from releases.models import ApiToken
from releases.models.tokens import NOT_GIVEN, SCOPES


def expiry(text: str | None) -> datetime | None:
    """'30d', '12h', an ISO date or time, or 'never'; None (not given) means the default lifetime."""
    if text is None:
        return NOT_GIVEN
    if text == "never":
        return None
    if match := re.fullmatch(r"(\d+)([dh])", text):
        amount, unit = int(match[1]), match[2]
        return timezone.now() + timedelta(**{"days" if unit == "d" else "hours": amount})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--expires {text!r}: expected e.g. 30d, 12h, 2027-01-31 or never") from None
    when = when if timezone.is_aware(when) else timezone.make_aware(when)
    if when <= timezone.now():
        raise CommandError(f"--expires {text!r} is in the past")
    return when


class Command(BaseCommand):
    help = "Create an API token for a user; prints the token once (only its hash is stored)."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("username")
        parser.add_argument("--name", default="ci")
        parser.add_argument("--scope", action="append", dest="scopes", choices=sorted(SCOPES), required=True,
                            help="repeat for several scopes")
        parser.add_argument("--expires", help="30d, 12h, 2027-01-31 or never (default: SLIPWAY_TOKEN_LIFETIME_DAYS)")
        parser.add_argument("--model", action="append", dest="models", default=[],
                            help="alerts from this token may name only these models (repeat; default: any)")
        parser.add_argument("--environment", action="append", dest="environments", default=[],
                            help="alerts from this token may name only these environments (repeat; default: any)")

    def handle(self, username: str, name: str, scopes: list[str], expires: str | None, models: list[str],
               environments: list[str], **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        token, raw = ApiToken.issue(user, name, scopes, expiry(expires), models=models, environments=environments)
        self.stdout.write(raw)
        until = f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "never expires"
        self.stderr.write(f"token {token.prefix}… for {username}: {', '.join(token.scopes)}; {until}")
