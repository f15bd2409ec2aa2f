"""Which addresses an outbound request may reach.

Loopback, private, link-local, multicast, reserved, unspecified and shared
addresses are refused, also inside IPv6 forms (``::ffff:127.0.0.1``, 6to4,
NAT64), unless ``OUTBOUND_ALLOWED_NETWORKS`` names a network that holds
them. ``outbound.fetcher`` checks every resolved address here.
"""

import functools
import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Networks refused whatever Python's ipaddress flags say (their lists changed
# between Python versions); the checks in _is_forbidden cover the rest.
_FORBIDDEN_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",  # "this network", 0.0.0.0 reaches the local host
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255
        "::/96",  # unspecified, loopback, IPv4-compatible (deprecated)
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, Teredo (2001::/32)
        "2001:db8::/32",
        "64:ff9b:1::/48",  # local-use NAT64
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# --- The setting -----------------------------------------------------------------


def parse_networks(value: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs from a comma-separated string or a list; ValueError names a bad one."""
    items = value.split(",") if isinstance(value, str) else value
    networks = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not a network in CIDR form (e.g. 10.0.0.0/8)") from None
    return tuple(networks)


@functools.lru_cache(maxsize=16)
def _allowed_networks_for(value: tuple[str, ...] | str) -> tuple[IPNetwork, ...]:
    try:
        return parse_networks(value)
    except ValueError as error:
        raise ImproperlyConfigured(f"OUTBOUND_ALLOWED_NETWORKS: {error}") from None


def allowed_networks() -> tuple[IPNetwork, ...]:
    # Read at call time, so an operator's override (or a test's) applies at once.
    value = getattr(settings, "OUTBOUND_ALLOWED_NETWORKS", ())
    return _allowed_networks_for(value if isinstance(value, str) else tuple(value))


# --- Addresses ----------------------------------------------------------------


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries to its destination, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_forbidden_address(address: IPAddress) -> bool:
    """True if we must not connect to ``address`` (before OUTBOUND_ALLOWED_NETWORKS)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return True
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            # ::ffff:a.b.c.d, 2002:ab:cd::/48 and 64:ff9b::a.b.c.d reach a.b.c.d.
            return is_forbidden_address(embedded)
    if any(address in network for network in _FORBIDDEN_NETWORKS):
        return True
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def is_allowed(address: IPAddress, allowed: tuple[IPNetwork, ...]) -> bool:
    if any(address.version == net.version and address in net for net in allowed):
        return True
    return not is_forbidden_address(address)
