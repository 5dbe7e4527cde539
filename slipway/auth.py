"""Django's ModelBackend, reading the signed-in user of each request with a prepared query (every page
asks for it: slipway/prepared.py)."""

from django.contrib.auth import backends
from django.contrib.auth.models import User
from django.db.models import QuerySet

from slipway.prepared import Prepared


@Prepared
def user_by_id(user_id: int) -> QuerySet[User]:
    return User.objects.filter(pk=user_id)


class ModelBackend(backends.ModelBackend):
    def get_user(self, user_id: int) -> User | None:
        if type(user_id) is not int:
            return super().get_user(user_id)
        try:
            user = user_by_id.get(user_id)
        except User.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None
