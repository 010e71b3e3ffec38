"""Egress (SSRF) guard: which resolved addresses the fetcher may connect to.

Two pieces:

* :class:`EgressPolicy` decides, for one resolved ``(ip, port)``, whether a
  connection is allowed. It uses an explicit deny list rather than
  ``ip.is_global`` alone, because on Python 3.11 ``is_global`` is True for the
  NAT64 and 6to4 prefixes, which can embed a private IPv4 address.
* :class:`GuardedResolver` wraps an aiohttp resolver and vets every address it
  returns. aiohttp connects to exactly the addresses its resolver returns, so
  the check runs at connect time and the connection is pinned to the vetted
  address: a DNS answer that changes between calls (rebinding) cannot swap in
  a different address after the check.

Numeric hosts in any spelling (``2130706433``, ``0x7f000001``, ``0177.0.0.1``,
``127.1``, ``0``) are interpreted the way the C library would interpret them
(``getaddrinfo`` with ``AI_NUMERICHOST``, which never touches the network), so a
check on the URL string cannot be bypassed by an unusual spelling.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Final

from aiohttp.abc import AbstractResolver, ResolveResult

from monitor.models import FetchError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = [
    "EgressPolicy",
    "GuardedResolver",
    "IPAddress",
    "numeric_host",
]


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# Never connectable, whatever the configuration says: these are not unicast
# destinations at all, or they are cloud metadata endpoints (credentials).
_ALWAYS_DENIED: Final = _nets(
    "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
    "224.0.0.0/4",  # multicast
    "255.255.255.255/32",  # broadcast
    "169.254.169.254/32",  # AWS/GCP/Azure/OpenStack metadata
    "169.254.170.2/32",  # AWS ECS task metadata
    "100.100.100.200/32",  # Alibaba Cloud metadata
    "::/128",  # unspecified
    "ff00::/8",  # multicast
    "fd00:ec2::254/128",  # AWS metadata over IPv6
)

# Private and local networks: denied by default, allowed for a config feed that
# opts in with ``allow_private: true``.
_PRIVATE: Final = _nets(
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",  # loopback
    "100.64.0.0/10",  # CGNAT (shared address space)
    "169.254.0.0/16",  # link-local (metadata endpoints stay denied above)
    "::1/128",
    "fc00::/7",  # unique local
    "fe80::/10",  # link-local
)

# Everything else that is not ordinary public unicast. Listed explicitly
# because ``is_global`` misses some of it on Python 3.11.
_DENIED: Final = _nets(
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation (TEST-NET-1)
    "192.88.99.0/24",  # 6to4 relay anycast
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",  # documentation (TEST-NET-3)
    "240.0.0.0/4",  # reserved
    "::/96",  # IPv4-compatible (deprecated), includes :: and ::1
    "::ffff:0:0/96",  # IPv4-mapped: an IPv4 address in IPv6 clothing
    "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
    "64:ff9b::/96",  # NAT64 well-known prefix
    "64:ff9b:1::/48",  # NAT64 local-use prefix
    "100::/64",  # discard-only
    "2001::/32",  # Teredo (embeds an IPv4 address)
    "2001:db8::/32",  # documentation
    "2001:10::/28",  # ORCHID
    "2002::/16",  # 6to4 (embeds an IPv4 address)
    "fec0::/10",  # site-local (deprecated)
)


def _in_any(ip: IPAddress, nets: Sequence[IPNetwork]) -> bool:
    # ``ip in net`` is False (not an error) when the versions differ.
    return any(ip in net for net in nets)


def _address(text: str) -> IPAddress:
    """An address as a resolver reports it, zone id (``%eth0``) dropped; ValueError if none."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def _unscoped(ip: IPAddress) -> IPAddress:
    """Drop an IPv6 zone id (``fe80::1%eth0``) so network membership works."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        return ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    return ip


def numeric_host(host: str) -> IPAddress | None:
    """The address a numeric host denotes, in any spelling the C library accepts.

    Returns None for a host name (something that would need DNS). Never does a
    network lookup: ``AI_NUMERICHOST`` makes ``getaddrinfo`` parse only.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(text, None, proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    for _family, _type, _proto, _canon, sockaddr in infos:
        try:
            return _address(str(sockaddr[0]))
        except ValueError:
            continue
    return None


class EgressPolicy:
    """Decides whether a resolved ``(ip, port)`` may be connected to.

    * ``allow_private`` opens loopback, RFC 1918, CGNAT, link-local and unique
      local networks (for config feeds that opt in). Metadata endpoints,
      multicast and unspecified addresses stay denied.
    * ``allowed_networks`` is an operator allow-list (e.g. ``["127.0.0.0/8"]``)
      that wins over the deny list, for every request.
    * ``allowed_ports``: None allows any port; otherwise only those listed
      (a sensible production value is ``[80, 443, 8080, 8443]``). The port
      check applies even inside ``allowed_networks``.

    Immutable: ``with_private`` returns a new policy.
    """

    __slots__ = ("_allow_private", "_allowed_networks", "_allowed_ports")

    def __init__(
        self,
        *,
        allow_private: bool = False,
        allowed_networks: Sequence[str] = (),
        allowed_ports: Sequence[int] | None = None,
    ) -> None:
        if isinstance(allowed_networks, str):
            raise TypeError("allowed_networks must be a sequence of CIDR strings, not a string")
        self._allow_private = allow_private
        self._allowed_networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allowed_networks
        )
        self._allowed_ports: frozenset[int] | None = (
            None if allowed_ports is None else frozenset(int(p) for p in allowed_ports)
        )

    @property
    def allow_private(self) -> bool:
        return self._allow_private

    def __repr__(self) -> str:
        nets = [str(n) for n in self._allowed_networks]
        ports = None if self._allowed_ports is None else sorted(self._allowed_ports)
        return (
            f"EgressPolicy(allow_private={self._allow_private}, "
            f"allowed_networks={nets}, allowed_ports={ports})"
        )

    def port_allowed(self, port: int) -> bool:
        """True if ``port`` may be connected to (any port when no list is set)."""
        return self._allowed_ports is None or port in self._allowed_ports

    def address_allowed(self, ip: IPAddress) -> bool:
        """True if ``ip`` may be connected to, whatever the port."""
        ip = _unscoped(ip)
        if _in_any(ip, _ALWAYS_DENIED):
            return False
        if _in_any(ip, self._allowed_networks):
            return True
        if _in_any(ip, _PRIVATE):
            return self._allow_private
        if _in_any(ip, _DENIED):
            return False
        # Catch-all for anything the lists above do not name (future IANA
        # special-purpose blocks): only globally routable unicast passes.
        return ip.is_global and not ip.is_multicast

    def is_allowed(self, ip: IPAddress, port: int) -> bool:
        """True if a connection to ``ip:port`` is allowed."""
        return self.port_allowed(port) and self.address_allowed(ip)

    def check(self, ip: IPAddress, port: int, *, host: str | None = None) -> None:
        """Raise ``FetchError(kind="blocked")`` unless ``ip:port`` is allowed.

        The message starts with "blocked non-public address" (or "blocked
        port" when only the port is refused) and names the address.
        """
        via = f" (host {host})" if host and host.strip("[]") != str(ip) else ""
        if not self.address_allowed(ip):
            raise FetchError(f"blocked non-public address {_fmt(ip, port)}{via}", kind="blocked")
        if not self.port_allowed(port):
            raise FetchError(f"blocked port {_fmt(ip, port)}{via}", kind="blocked")

    def with_private(self) -> EgressPolicy:
        """The same policy with ``allow_private=True``."""
        if self._allow_private:
            return self
        clone = EgressPolicy.__new__(EgressPolicy)
        clone._allow_private = True
        clone._allowed_networks = self._allowed_networks
        clone._allowed_ports = self._allowed_ports
        return clone


def _fmt(ip: IPAddress, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that only returns addresses the policy allows.

    Numeric hosts are parsed locally (no DNS). Names go to ``inner`` (by
    default aiohttp's ``ThreadedResolver``, i.e. the system resolver). Denied
    addresses are dropped from the answer; if none is left, the lookup fails
    with ``FetchError(kind="blocked")``, which aiohttp lets through unchanged.

    ``policy=None`` vets nothing: it is used only for the connection to an
    operator-configured proxy.
    """

    def __init__(self, policy: EgressPolicy | None, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner
        self._owns_inner = inner is None

    def _inner_resolver(self) -> AbstractResolver:
        if self._inner is None:
            # Imported here: ThreadedResolver needs the running loop.
            from aiohttp.resolver import ThreadedResolver

            self._inner = ThreadedResolver()
        return self._inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        literal = numeric_host(host)
        if literal is not None:
            answers: list[ResolveResult] = [
                {
                    "hostname": host,
                    "host": str(literal),
                    "port": port,
                    "family": socket.AF_INET6 if literal.version == 6 else socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            ]
        else:
            answers = await self._inner_resolver().resolve(host, port, family)
        if self._policy is None:
            return answers
        return self._vet(host, answers)

    def _vet(self, host: str, answers: list[ResolveResult]) -> list[ResolveResult]:
        assert self._policy is not None
        allowed: list[ResolveResult] = []
        first_refusal: FetchError | None = None
        for answer in answers:
            try:
                ip = _address(str(answer["host"]))
                self._policy.check(ip, int(answer["port"]), host=host)
            except ValueError:
                first_refusal = first_refusal or FetchError(
                    f"blocked unparseable address {answer['host']!r} (host {host})",
                    kind="blocked",
                )
                continue
            except FetchError as exc:
                first_refusal = first_refusal or exc
                continue
            allowed.append(answer)
        if allowed:
            return allowed
        if first_refusal is not None:
            raise first_refusal
        raise FetchError(f"no address for host {host}", kind="connection")

    async def close(self) -> None:
        if self._owns_inner and self._inner is not None:
            await self._inner.close()
