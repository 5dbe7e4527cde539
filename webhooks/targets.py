"""Where webhooks may be sent: public addresses only, unless SLIPWAY_WEBHOOK_ALLOWED_NETWORKS lets an
internal receiver in. Checked when a subscription is saved and again when each delivery is sent, on
the address the connection then uses (pinned: the name is resolved once, so a DNS answer that changes
between the check and the connect cannot send the request inside).
"""

import ipaddress
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedTarget(ValueError):
    """The URL leads to an address webhooks may not reach (loopback, private, link-local, ...)."""


def _kind(ip: Address) -> str | None:
    """What makes the address internal, or None for a public unicast address."""
    for kind in ("loopback", "link_local", "multicast", "private", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-global"


def check_address(host: str, ip: Address) -> None:
    if isinstance(ip, ipaddress.IPv6Address):  # one that carries an IPv4 address is judged by it (mapped, 6to4)
        ip = ip.ipv4_mapped or ip.sixtofour or ip
    if any(ip in ipaddress.ip_network(net) for net in settings.SLIPWAY_WEBHOOK_ALLOWED_NETWORKS):
        return
    kind = _kind(ip)
    if kind is not None:
        raise BlockedTarget(f"{host} is {ip}, a {kind} address: webhooks go to public addresses only "
                            "(an internal receiver needs SLIPWAY_WEBHOOK_ALLOWED_NETWORKS)")


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str


def parse(url: str) -> Target:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BlockedTarget("expected an http or https URL")
    if parts.username or parts.password:
        raise BlockedTarget("a webhook URL may not carry a user name or password")
    path = parts.path or "/"
    return Target(parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                  path + (f"?{parts.query}" if parts.query else ""))


def resolve(target: Target) -> list[Address]:
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BlockedTarget(f"{target.host} does not resolve: {exc.strerror}") from None
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))


def check_on_save(url: str) -> None:
    """Refuse a URL whose host is, or now resolves to, an internal address. A name that does not resolve
    yet is let through: it is checked again, resolved, when each delivery is sent."""
    target = parse(url)
    try:
        addresses = [ipaddress.ip_address(target.host)]
    except ValueError:
        try:
            addresses = resolve(target)
        except BlockedTarget:
            return
    for ip in addresses:
        check_address(target.host, ip)


def pinned_address(target: Target) -> Address:
    """The address to connect to: every address the name resolves to must be allowed."""
    addresses = resolve(target)
    for ip in addresses:
        check_address(target.host, ip)
    return addresses[0]


class _PinnedTLS(HTTPAdapter):
    """Connects to an address but checks the certificate (and sends SNI) for the URL's host name."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs |= {"server_hostname": self.host, "assert_hostname": self.host}
        super().init_poolmanager(*args, **kwargs)


def post(url: str, *, data: bytes, headers: dict[str, str], timeout: tuple[float, float]) -> requests.Response:
    """POST to the URL through the one address checked here (raises BlockedTarget)."""
    target = parse(url)
    ip = pinned_address(target)
    netloc = f"[{ip}]" if ip.version == 6 else str(ip)
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment: the pinned address is the peer
        if target.scheme == "https":
            session.mount("https://", _PinnedTLS(target.host))
        return session.post(f"{target.scheme}://{netloc}:{target.port}{target.path}", data=data,
                            headers=headers | {"Host": host_header}, timeout=timeout, allow_redirects=False,
                            stream=True)  # the body is never read
