"""Guarded HTTP GET for the web server: which addresses may be reached, redirects, size and time limits.

Every hop is resolved here and the connection goes to the address that was checked, so a DNS answer that
changes between the check and the connection (rebinding) cannot steer a request to a private address.
"""

from __future__ import annotations

import html
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:  # httpx is imported on first use: start-up time matters more than the first fetch
    import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
ERROR_EXCERPT_CHARS = 300

# Ranges that Python's `is_global` lets through (or that differ between Python versions) but that no public
# web page lives on.
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # carrier-grade NAT; 100.100.100.200 is Alibaba Cloud's metadata service
        "168.63.129.16/32",  # Azure's platform (wire server) address
        "192.0.0.0/24",  # IETF protocol assignments
        "192.88.99.0/24",  # 6to4 relay anycast
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
        "::/96",  # IPv4-compatible (deprecated) and unspecified
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, Teredo included
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local; fd00:ec2::254 is AWS's metadata service over IPv6
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class FetchError(Exception):
    """A fetch failed; the message names the URL, says what happened and what to do."""


class RefusedAddressError(FetchError):
    """The URL leads to an address this server may not reach."""


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), if any."""
    if ip.version == 4:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_public_address(ip: IPAddress) -> bool:
    """Whether `ip` is an ordinary internet address: not private, loopback, link-local, CGNAT, multicast,
    reserved, documentation or a cloud metadata endpoint, in either IP version."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        return is_public_address(inner)
    if any(ip in net for net in _BLOCKED_NETWORKS if net.version == ip.version):
        return False
    special = ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
    return ip.is_global and not (special or ip.is_reserved or ip.is_unspecified)


def address_kind(ip: IPAddress) -> str:
    """What kind of non-public address `ip` is, for error messages."""
    ip = embedded_ipv4(ip) or ip
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return (
            "link-local (cloud metadata)"
            if str(ip) in ("169.254.169.254", "fe80::a9fe:a9fe")
            else "link-local"
        )
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if ip.version == 4 and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "carrier-grade NAT"
    if ip.is_private:
        return "private"
    return "reserved or special-purpose"


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


class AddressPolicy:
    """Which resolved addresses may be connected to: public ones, plus the hosts and networks allowed."""

    def __init__(self, allow_hosts: Iterable[str] = (), *, allow_private: bool = False) -> None:
        self.allow_private = allow_private
        self._names: set[str] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allow_hosts:
            entry = entry.strip()
            try:
                self._networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if not entry or "/" in entry or ":" in entry:
                    raise ValueError(
                        f"--allow-host {entry!r} is neither a host name, an IP nor a CIDR"
                    ) from None
                self._names.add(entry.lower().rstrip("."))

    def allows(self, host: str, ip: IPAddress) -> bool:
        """Whether a connection for `host` may go to `ip`."""
        if self.allow_private or host.lower().rstrip(".") in self._names or is_public_address(ip):
            return True
        candidates = [ip, *filter(None, [embedded_ipv4(ip)])]
        return any(c in net for c in candidates for net in self._networks if net.version == c.version)


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for `host`, in its order of preference."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass
class FetchedResponse:
    """A successful (2xx) answer, its body read up to the size limit."""

    url: str  # as asked for
    final_url: str  # after redirects
    status: int
    media_type: str  # lower case, without parameters; "" when the server sent none
    charset: str | None
    body: bytes
    cut: bool  # the body was longer than max_bytes and stopped there
    redirects: list[str] = field(default_factory=list)


class Fetcher:
    """GETs a URL under an `AddressPolicy`, following redirects by hand and re-checking every hop."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        user_agent: str,
        timeout: float,
        max_bytes: int,
        max_redirects: int = 5,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy
        self.user_agent = user_agent
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self._resolve = resolver
        self._ssl_context = ssl_context  # default: the system's CA bundle via httpx, made on first use

    async def get(self, url: str) -> FetchedResponse:
        """Fetch `url`; raises `FetchError` (or `RefusedAddressError`) with a message for the model."""
        import httpx

        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        try:
            with anyio.fail_after(self.timeout):
                async with httpx.AsyncClient(
                    headers={
                        "User-Agent": self.user_agent,
                        "Accept": "text/html,application/xhtml+xml,application/json;q=0.9,"
                        "text/plain;q=0.9,application/pdf;q=0.8,*/*;q=0.5",
                    },
                    timeout=self.timeout,
                    verify=self._ssl_context,
                    follow_redirects=False,
                    trust_env=False,  # a proxy would connect on our behalf and bypass the address check
                    # Connections are made to checked IPs; reusing one could carry another host's TLS session.
                    limits=httpx.Limits(max_keepalive_connections=0),
                ) as client:
                    return await self._follow(client, url)
        except TimeoutError:
            raise FetchError(
                f"Timed out after {self.timeout:g} s fetching {url}; the site is slow or unreachable."
            ) from None
        except httpx.TimeoutException as exc:
            raise FetchError(
                f"Timed out fetching {url} ({type(exc).__name__}); the site is slow or unreachable."
            ) from None
        except httpx.HTTPError as exc:
            raise FetchError(f"Could not fetch {url}: {type(exc).__name__}: {exc or 'no details'}") from None

    async def _follow(self, client: httpx.AsyncClient, url: str) -> FetchedResponse:
        import httpx

        try:
            current = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise FetchError(f"Not a valid URL: {url!r} ({exc}).") from None
        redirects: list[str] = []
        while True:
            try:
                response = await self._send(client, current)
            except RefusedAddressError as exc:
                if redirects:
                    raise RefusedAddressError(
                        f"{exc} It was reached by a redirect from {redirects[-1]}."
                    ) from None
                raise
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECT_CODES and location:
                    target = current.join(location)
                    if str(target) == str(current) or str(target) in redirects:
                        raise FetchError(f"Redirect loop fetching {url}: {current} leads back to {target}.")
                    if len(redirects) >= self.max_redirects:
                        raise FetchError(
                            f"Too many redirects fetching {url}: gave up after {self.max_redirects} "
                            f"(last one to {target})."
                        )
                    redirects.append(str(current))
                    current = target
                    continue
                if response.status_code >= 300:
                    excerpt = await self._excerpt(response)
                    raise FetchError(
                        f"HTTP {response.status_code} {response.reason_phrase} from {current}"
                        + (f": {excerpt}" if excerpt else "")
                    )
                body, cut = await self._read(response)
            finally:
                await response.aclose()
            media_type, _, params = response.headers.get("content-type", "").partition(";")
            charset = re.search(r"charset\s*=\s*\"?([\w.:-]+)", params, re.IGNORECASE)
            return FetchedResponse(
                url=url,
                final_url=str(current),
                status=response.status_code,
                media_type=media_type.strip().lower(),
                charset=charset.group(1) if charset else None,
                body=body,
                cut=cut,
                redirects=redirects,
            )

    async def _send(self, client: httpx.AsyncClient, url: httpx.URL) -> httpx.Response:
        """Check `url`, resolve its host, and send the request to the first checked address that answers."""
        import httpx

        if not url.scheme:
            raise FetchError(f"Not an absolute URL: {url}. Give one that starts with http:// or https://.")
        if url.scheme not in ("http", "https"):
            raise FetchError(
                f"Refused to fetch {url}: only http and https URLs are fetched, not {url.scheme}."
            )
        host = url.raw_host.decode("ascii")
        if not host:
            raise FetchError(f"Refused to fetch {url}: the URL has no host.")
        addresses = await self._checked_addresses(url, host)
        error: httpx.ConnectError | None = None
        for ip in addresses:
            request = client.build_request(
                "GET",
                url.copy_with(host=str(ip)),
                headers={"Host": url.netloc.decode("ascii")},
                extensions={"sni_hostname": host} if url.scheme == "https" else {},
            )
            try:
                return await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                error = exc
        raise FetchError(
            f"Could not connect to {host} ({', '.join(map(str, addresses))}) for {url}: {error}."
        )

    async def _checked_addresses(self, url: httpx.URL, host: str) -> list[IPAddress]:
        literal = _parse_ip(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                found = await self._resolve(host, url.port or (443 if url.scheme == "https" else 80))
            except OSError as exc:
                raise FetchError(f"Could not resolve host {host!r} for {url}: {exc}.") from None
            addresses = list(dict.fromkeys(ip for ip in map(_parse_ip, found) if ip is not None))
            if not addresses:
                raise FetchError(f"Could not resolve host {host!r} for {url}: no addresses.")
        # One refused address refuses the host: a name that mixes public and private answers is a trap.
        for ip in addresses:
            if not self.policy.allows(host, ip):
                shown = host if literal is not None else f"{host} resolves to {ip}, which"
                raise RefusedAddressError(
                    f"Refused to fetch {url}: {shown} is a {address_kind(ip)} address, not a public one. "
                    f"Start the web server with --allow-host {host} (or --allow-private) to allow it."
                )
        return addresses

    async def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            if size + len(chunk) > self.max_bytes:
                chunks.append(chunk[: self.max_bytes - size])
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), False

    async def _excerpt(self, response: httpx.Response) -> str:
        """The start of an error page as one line of plain text."""
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= 4096:
                break
        text = body[:4096].decode("utf-8", "replace")
        text = re.sub(r"<(script|style)\b.*?</\1\s*>", " ", text, flags=re.IGNORECASE | re.DOTALL)
        text = " ".join(html.unescape(re.sub(r"<[^>]*>", " ", text)).split())
        return text if len(text) <= ERROR_EXCERPT_CHARS else text[:ERROR_EXCERPT_CHARS] + "…"
