"""Who acts: a person, a person through an API token, or a worker process."""

import socket
from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, User


@dataclass(frozen=True)
class Actor:
    user: User | None
    label: str

    @classmethod
    def person(cls, user: User | AnonymousUser, token_name: str | None = None) -> "Actor":
        if not isinstance(user, User):
            raise TypeError("only a signed-in user acts as a person")
        label = user.get_username() + (f" (token {token_name})" if token_name else "")
        return cls(user=user, label=label)

    @classmethod
    def worker(cls) -> "Actor":
        return cls(user=None, label=f"worker@{socket.gethostname()}")

    @classmethod
    def system(cls, what: str) -> "Actor":
        return cls(user=None, label=what)
