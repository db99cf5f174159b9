"""Who is calling: the client address, believing ``X-Forwarded-For`` only from trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Sequence[str]) -> list[Network]:
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_ip(request: Request, trusted: Sequence[Network] = ()) -> str | None:
    """The address of the client. When the peer is a trusted proxy, walk ``X-Forwarded-For``
    from the right and take the first address that is not itself a trusted proxy; otherwise the
    header is the caller's own claim and is ignored."""
    peer = request.client.host if request.client else None
    if peer is None or not _is_trusted(peer, trusted):
        return _valid_or_none(peer)
    # Every X-Forwarded-For line counts: proxies may append a line of their own rather than
    # extend the client's, and the client's own lines come first.
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            # The first hop our proxies did not vouch for; if it is garbage, the address is
            # unknown (the caller's earlier claims are not believed instead).
            return _valid_or_none(hop)
    return _valid_or_none(peer)


def _valid_or_none(address: str | None) -> str | None:
    if address is None:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


@dataclass(frozen=True)
class RequestMeta:
    """Where a request came from, as the audit trail and rate limits record it."""

    ip: str | None
    user_agent: str | None


async def _request_meta(request: Request) -> RequestMeta:
    trusted: list[Network] = request.app.state.trusted_proxies
    return RequestMeta(ip=client_ip(request, trusted), user_agent=request.headers.get("user-agent"))


ClientMeta = Annotated[RequestMeta, Depends(_request_meta)]
