"""The web MCP server (servers/web.py) against a local test site: fetch, its safety rules, and search."""

from __future__ import annotations

import ipaddress
import json
import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from agent.servers._web_convert import convert, decode, html_to_markdown, kind_of
from agent.servers._web_fetch import (
    AddressPolicy,
    Fetcher,
    FetchError,
    RefusedAddressError,
    is_public_address,
)
from agent.servers.web import build_server, main
from tests.conftest import free_port, running_server

REPO_ROOT = Path(__file__).resolve().parents[1]
SITE_FILES = Path(__file__).resolve().parent / "sites" / "web"
LARGE_BYTES = 3_000_000
SERVER_MAX_BYTES = 1_000_000
SERVER_TIMEOUT = 1.5
NOTES = "Field notes, 12 May.\nLow tide at 06:40; anemones open, two sea stars.\nWater 11 degrees.\n"


def tiny_pdf(title: str, text: str) -> bytes:
    """A one-page PDF showing `text` in Helvetica, built by hand so no PDF writer is needed."""
    content = b"BT /F1 12 Tf 20 100 Td (" + text.encode("latin-1") + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 400 144] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (" + title.encode("latin-1") + b") >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return out


class SiteHandler(BaseHTTPRequestHandler):
    """The test site: one page or behaviour per path."""

    stop: threading.Event  # set on the class by the fixture; ends slow answers at teardown

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send(
        self, status: int, content_type: str | None, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send(302, "text/plain", b"moved", {"Location": location})

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        if path == "/article":
            self.send(200, "text/html; charset=utf-8", (SITE_FILES / "article.html").read_bytes())
        elif path == "/data.json":
            self.send(
                200, "application/json", b'{"station":"North Point","tides":[{"time":"06:40","m":0.4}]}'
            )
        elif path == "/notes.txt":
            self.send(200, "text/plain; charset=utf-8", NOTES.encode())
        elif path == "/large":
            line = b"Row of the large tide archive, kept only to make this page several megabytes long.\n"
            self.send(200, "text/plain", line * (LARGE_BYTES // len(line)))
        elif path == "/tables.pdf":
            self.send(200, "application/pdf", tiny_pdf("Tide Tables", "High water 12:55, low water 06:40"))
        elif path.startswith("/chain/"):
            left = int(path.rsplit("/", 1)[1])
            self.redirect(f"/chain/{left - 1}" if left > 1 else "/notes.txt")
        elif path == "/loop/a":
            self.redirect("/loop/b")
        elif path == "/loop/b":
            self.redirect("/loop/a")
        elif path == "/slow":
            self.stop.wait(10)
            self.send(200, "text/plain", b"finally")
        elif path == "/missing":
            self.send(
                404, "text/html", b"<html><body><h1>Not Found</h1><p>No page at /missing.</p></body></html>"
            )
        elif path == "/broken":
            self.send(500, "text/plain", b"Internal failure: the tide database is unavailable")
        elif path == "/blob":
            self.send(200, "application/octet-stream", bytes(range(256)) * 4)
        elif path == "/to-metadata":
            self.redirect("http://169.254.169.254/latest/meta-data/")
        elif path == "/to-private":
            # Loopback but not allow-listed: refused like a private network, and harmless if the check broke.
            self.redirect("http://127.0.0.2/admin")
        elif path == "/to-file":
            self.redirect("file:///etc/passwd")
        elif path == "/searxng/search":
            self.searxng(query)
        elif path == "/brave":
            self.brave(query)
        else:
            self.send(404, "text/plain", b"no such path")

    def searxng(self, query: dict[str, list[str]]) -> None:
        if query.get("format") != ["json"]:
            self.send(403, "text/html", b"<h1>Forbidden</h1>")
            return
        q = query["q"][0]
        results = [
            {"title": f"{q} guide", "url": "https://example.org/guide", "content": f"All about {q}."},
            {"title": f"{q} tables", "url": "https://example.org/tables", "content": "Times &amp; heights."},
            {"title": f"{q} forum", "url": "https://example.org/forum", "content": ""},
        ]
        self.send(200, "application/json", json.dumps({"query": q, "results": results}).encode())

    def brave(self, query: dict[str, list[str]]) -> None:
        if self.headers.get("X-Subscription-Token") != "test-key":
            self.send(401, "application/json", b'{"error": "unauthorized"}')
            return
        hit = {
            "title": "Tide tables",
            "url": "https://example.org/tides",
            "description": f"Daily <strong>{query['q'][0]}</strong>",
        }
        self.send(200, "application/json", json.dumps({"web": {"results": [hit]}}).encode())


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (timeouts, cut bodies) are expected here


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """Base URL of the test site on 127.0.0.1."""
    stop = threading.Event()
    handler = type("Handler", (SiteHandler,), {"stop": stop})
    httpd = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


class WebSession:
    """A connected MCP client of a web server subprocess, called from synchronous tests."""

    def __init__(self, portal: BlockingPortal, client: Client) -> None:
        self.portal, self.client = portal, client

    def tools(self) -> dict[str, Any]:
        return {tool.name: tool for tool in self.portal.call(self.client.list_tools).tools}

    def call(self, name: str, **arguments: Any) -> CallToolResult:
        return self.portal.call(self.client.call_tool, name, arguments)

    def fetch(self, url: str, **arguments: Any) -> tuple[str, bool]:
        """The text of a fetch answer and whether it is an error."""
        result = self.call("fetch", url=url, **arguments)
        return "".join(block.text for block in result.content if block.type == "text"), result.is_error


@contextmanager
def web_server(*args: str) -> Iterator[WebSession]:
    """`python -m agent.servers.web ARGS` over stdio, in a portal thread that enters and exits the client."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "agent.servers.web", *args], cwd=str(REPO_ROOT)
    )
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(Client(params)) as client:
        yield WebSession(portal, client)


@pytest.fixture(scope="module")
def web(site: str) -> Iterator[WebSession]:
    """The server as tests use it: the site's host allowed, SearXNG on the site, small limits."""
    with web_server(
        "--allow-host", "127.0.0.1",
        "--searxng-url", f"{site}/searxng",
        "--timeout", str(SERVER_TIMEOUT),
        "--max-bytes", str(SERVER_MAX_BYTES),
    ) as session:  # fmt: skip
        yield session


@pytest.fixture(scope="module")
def plain_web() -> Iterator[WebSession]:
    """The server with no options at all."""
    with web_server() as session:
        yield session


# --- the tools on offer ---


def test_fetch_is_read_only_open_world_with_every_parameter_described(web: WebSession) -> None:
    fetch = web.tools()["fetch"]
    assert fetch.annotations.read_only_hint is True
    assert fetch.annotations.idempotent_hint is True
    assert fetch.annotations.open_world_hint is True
    properties = fetch.input_schema["properties"]
    assert set(properties) == {"url", "max_length", "start_index", "raw"}
    assert all(prop.get("description") for prop in properties.values())
    assert properties["max_length"]["default"] == 20000
    assert fetch.input_schema["required"] == ["url"]


def test_search_is_not_listed_without_a_backend(plain_web: WebSession) -> None:
    assert set(plain_web.tools()) == {"fetch"}


def test_search_is_listed_with_a_searxng_url(web: WebSession) -> None:
    search = web.tools()["search"]
    assert search.annotations.read_only_hint is True
    assert search.output_schema is not None and "results" in search.output_schema["properties"]


# --- what fetch returns ---


def test_html_comes_back_as_markdown_with_the_title_first(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/article")
    assert not is_error
    assert text.startswith("Title: Tide Pools of the North Coast\n")
    assert "# Tide Pools of the North Coast" in text
    assert "## When to visit" in text
    assert "- Wear shoes with grip." in text
    assert "**anemones**" in text


def test_html_links_are_kept_as_absolute_markdown_links(web: WebSession, site: str) -> None:
    text, _ = web.fetch(f"{site}/article")
    assert f"[tide tables guide]({site}/guides/tides.html)" in text
    assert "[marine life survey](https://example.org/marine-life)" in text
    assert "javascript:" not in text and "(#top)" not in text


def test_html_navigation_footer_sidebar_scripts_and_hidden_text_are_left_out(
    web: WebSession, site: str
) -> None:
    text, _ = web.fetch(f"{site}/article")
    for noise in (
        "NAV-ARCHIVE-LINK",
        "FOOTER-NOISE",
        "SIDEBAR-ADVERT",
        "TRACKING-SCRIPT-NOISE",
        "HIDDEN-TEXT",
    ):
        assert noise not in text


def test_raw_returns_the_html_source(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/article", raw=True)
    assert not is_error
    assert "<nav>" in text and "NAV-ARCHIVE-LINK" in text


def test_json_is_pretty_printed(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/data.json")
    assert not is_error
    assert "Content-Type: application/json" in text
    assert '{\n  "station": "North Point",\n  "tides": [\n    {\n      "time": "06:40"' in text


def test_plain_text_comes_back_as_is(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/notes.txt")
    assert not is_error
    assert text.endswith("\n\n" + NOTES)


def test_pdf_comes_back_as_text(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/tables.pdf")
    assert not is_error, text
    assert text.startswith("Title: Tide Tables\n")
    assert "High water 12:55, low water 06:40" in text


def test_long_content_is_paged_and_says_how_to_read_on(web: WebSession, site: str) -> None:
    first, _ = web.fetch(f"{site}/notes.txt", max_length=30)
    assert first.split("\n\n", 1)[1].startswith(NOTES[:30])
    assert "Call fetch with start_index=30 to get the next part." in first
    second, is_error = web.fetch(f"{site}/notes.txt", max_length=30, start_index=30)
    assert not is_error
    assert NOTES[30:60] in second
    assert f"Showing characters 30-60 of {len(NOTES)}." in second


def test_start_index_past_the_end_is_an_error(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/notes.txt", start_index=10_000)
    assert is_error
    assert "past the end" in text


def test_a_large_response_is_cut_at_max_bytes_and_says_so(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/large")
    assert not is_error
    assert f"larger than {SERVER_MAX_BYTES} bytes and was cut there" in text
    assert f"of {SERVER_MAX_BYTES}." in text  # the text read is exactly the byte limit (ASCII)


def test_redirects_are_followed_and_the_final_url_reported(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/chain/3")
    assert not is_error
    assert f"URL: {site}/notes.txt (redirected from {site}/chain/3)" in text
    assert NOTES in text


def test_a_redirect_loop_is_an_error(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/loop/a")
    assert is_error
    assert "Redirect loop" in text


def test_more_than_five_redirects_is_an_error(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/chain/9")
    assert is_error
    assert "Too many redirects" in text


def test_a_slow_site_times_out(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/slow")
    assert is_error
    assert "Timed out" in text and "/slow" in text


def test_http_404_is_an_error_with_the_status_and_an_excerpt(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/missing")
    assert is_error
    assert "HTTP 404 Not Found" in text
    assert "No page at /missing." in text and "<p>" not in text


def test_http_500_is_an_error_with_the_status_and_an_excerpt(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/broken")
    assert is_error
    assert "HTTP 500" in text and "the tide database is unavailable" in text


def test_a_binary_content_type_is_an_error_naming_the_type(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/blob")
    assert is_error
    assert "'application/octet-stream'" in text


# --- where fetch may go ---


def test_a_redirect_to_the_cloud_metadata_address_is_refused(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/to-metadata")
    assert is_error
    # The refusal names the address class: it came from the check, not from a failed connection.
    assert "Refused to fetch http://169.254.169.254/latest/meta-data/" in text
    assert "link-local" in text and f"redirect from {site}/to-metadata" in text


def test_a_redirect_to_an_address_that_is_not_allowed_is_refused(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/to-private")
    assert is_error
    assert "Refused to fetch http://127.0.0.2/admin: 127.0.0.2 is a" in text


def test_a_redirect_to_another_scheme_is_refused(web: WebSession, site: str) -> None:
    text, is_error = web.fetch(f"{site}/to-file")
    assert is_error
    assert "only http and https" in text


def test_loopback_is_refused_without_allow_host(plain_web: WebSession, site: str) -> None:
    text, is_error = plain_web.fetch(f"{site}/notes.txt")
    assert is_error
    assert "127.0.0.1 is a loopback address" in text and "--allow-host" in text
    assert NOTES not in text


def test_a_host_name_is_checked_after_resolving_it(plain_web: WebSession, site: str) -> None:
    text, is_error = plain_web.fetch(site.replace("127.0.0.1", "localhost") + "/notes.txt")
    assert is_error
    assert "localhost resolves to" in text and "loopback" in text


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "100.100.100.200", "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1",
        "168.63.129.16", "::1", "::", "fe80::1", "fd00:ec2::254", "fc00::1", "ff02::1", "2001:db8::1",
        "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a00:1", "2002:a00:1::", "::127.0.0.1",
    ],
)  # fmt: skip
def test_special_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_ordinary_internet_addresses_are_public(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


def test_allow_host_takes_names_addresses_and_networks() -> None:
    policy = AddressPolicy(["intranet.example", "10.0.0.0/8", "::1"])
    assert policy.allows("INTRANET.example.", ipaddress.ip_address("192.168.0.5"))
    assert policy.allows("wiki.corp", ipaddress.ip_address("10.9.8.7"))
    assert policy.allows("wiki.corp", ipaddress.ip_address("::ffff:10.9.8.7"))
    assert policy.allows("localhost", ipaddress.ip_address("::1"))
    assert not policy.allows("localhost", ipaddress.ip_address("127.0.0.1"))
    assert AddressPolicy(allow_private=True).allows("x", ipaddress.ip_address("169.254.169.254"))


async def test_a_name_resolving_to_a_private_address_is_refused_before_connecting(monkeypatch) -> None:
    import socket

    def no_connection(*args, **kwargs):
        raise AssertionError("the test tried to open a connection; the address check must refuse first")

    # Were the check broken, nothing may leave this machine: any connection attempt fails the test.
    monkeypatch.setattr(socket.socket, "connect", no_connection)
    monkeypatch.setattr(socket.socket, "connect_ex", no_connection)
    monkeypatch.setattr(socket, "create_connection", no_connection)
    asked: list[tuple[str, int]] = []

    async def rebinding_resolver(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["93.184.215.14", "10.0.0.7"]  # one public answer must not launder a private one

    fetcher = Fetcher(
        AddressPolicy(), user_agent="test", timeout=5, max_bytes=1000, resolver=rebinding_resolver
    )
    with pytest.raises(
        RefusedAddressError, match=r"internal\.example resolves to 10\.0\.0\.7, which is a private"
    ):
        await fetcher.get("https://internal.example:8443/secrets")
    assert asked == [("internal.example", 8443)]


async def test_https_goes_to_the_checked_address_but_is_verified_against_the_host_name(
    tmp_path: Path,
) -> None:
    cert, key = self_signed_certificate(tmp_path, "localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    names_asked: list[str | None] = []
    server_context.sni_callback = lambda sock, name, ctx: names_asked.append(name)

    class EchoHost(SiteHandler):
        def do_GET(self) -> None:
            self.send(200, "text/plain", f"Host: {self.headers['Host']}".encode())

    httpd = QuietServer(("127.0.0.1", 0), EchoHost)
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    def fetcher(allow: str) -> Fetcher:
        trusting = ssl.create_default_context(cafile=str(cert))
        policy = AddressPolicy([allow])
        return Fetcher(
            policy, user_agent="test", timeout=5, max_bytes=1000, resolver=loopback, ssl_context=trusting
        )

    try:
        response = await fetcher("localhost").get(f"https://localhost:{port}/")
        assert response.body == f"Host: localhost:{port}".encode()
        assert names_asked == ["localhost"]
        with pytest.raises(FetchError, match="certificate"):  # the certificate names localhost, not the IP
            await fetcher("127.0.0.1").get(f"https://127.0.0.1:{port}/")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def self_signed_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_a_relative_url_is_an_error_that_asks_for_an_absolute_one(web: WebSession) -> None:
    text, is_error = web.fetch("docs/page.html")
    assert is_error
    assert "Not an absolute URL" in text


# --- conversion details ---


def test_a_page_without_semantic_markup_keeps_its_prose_and_drops_menus_and_comments() -> None:
    prose = "Tide pools form where the sea leaves water behind, in hollows of rock, at low tide. " * 3
    page = f"""<html><body>
        <div id="menu"><a href="/a">Home</a> | <a href="/b">Archive</a></div>
        <div class="content"><h1>Tide pools</h1><p>{prose}</p><p>{prose}</p></div>
        <div class="comments"><p>Great post, thanks a lot, really enjoyed it, more please!</p></div>
        </body></html>"""
    title, markdown = html_to_markdown(page, "https://example.org/")
    assert title == "Tide pools"
    assert markdown.startswith("# Tide pools\n\nTide pools form")
    assert "Archive" not in markdown and "Great post" not in markdown


def test_markdown_keeps_code_blocks_nested_lists_and_tables() -> None:
    page = """<main>
        <pre><code class="language-python">def depth(x):\n    return x * 2\n</code></pre>
        <ol start="3"><li>three<ul><li>nested <em>one</em></li></ul></li><li>four</li></ol>
        <table><tr><th>time</th><th>height</th></tr><tr><td>06:40</td><td><code>0.4 m</code></td></tr></table>
        <p>Line<br>break and <a href="/x">a link</a>.</p></main>"""
    _, markdown = html_to_markdown(page, "https://example.org/docs/")
    assert "```python\ndef depth(x):\n    return x * 2\n```" in markdown
    assert "3. three\n   - nested *one*\n4. four" in markdown
    assert "| time | height |\n| --- | --- |\n| 06:40 | `0.4 m` |" in markdown
    assert "Line\nbreak and [a link](https://example.org/x)." in markdown


@pytest.mark.parametrize(
    ("media_type", "body", "kind"),
    [
        ("", b"%PDF-1.4 ...", "pdf"),
        ("application/octet-stream", b"%PDF-1.7 ...", "pdf"),
        ("", b"<!DOCTYPE html><p>hi", "html"),
        ("", b"just words", "text"),
        ("application/ld+json", b"{}", "json"),
        ("image/svg+xml", b"<svg/>", "text"),
        ("image/png", b"\x89PNG", None),
        ("application/zip", b"PK", None),
    ],
)
def test_content_kind_comes_from_the_type_or_a_sniff_when_there_is_none(
    media_type: str, body: bytes, kind: str | None
) -> None:
    assert kind_of(media_type, body) == kind


def test_text_is_decoded_by_the_declared_or_meta_charset() -> None:
    assert decode("Tromsø".encode("latin-1"), "iso-8859-1") == "Tromsø"
    page = '<meta charset="windows-1252"><p>caf\xe9</p>'.encode("latin-1")
    assert "café" in decode(page, None, sniff_html=True)
    assert decode("naïve".encode()[:-1] + b"\xc3", None).startswith("naïv")  # cut inside a character


def test_invalid_json_is_shown_as_sent() -> None:
    assert convert(b'{"cut": [1, 2', "application/json", None, "https://example.org/").text == '{"cut": [1, 2'


# --- search ---


def test_search_returns_a_numbered_list_and_structured_results(web: WebSession) -> None:
    result = web.call("search", query="tide pools", max_results=2)
    assert not result.is_error
    text = result.content[0].text
    assert "1. tide pools guide\n   https://example.org/guide\n   All about tide pools." in text
    assert "2. tide pools tables\n   https://example.org/tables\n   Times & heights." in text
    assert "3." not in text
    assert result.structured_content["backend"] == "searxng"
    assert [hit["url"] for hit in result.structured_content["results"]] == [
        "https://example.org/guide",
        "https://example.org/tables",
    ]


async def test_brave_backend_sends_the_key_and_strips_highlights(site: str) -> None:
    server = build_server(search_backend="brave", brave_api_key="test-key", brave_url=f"{site}/brave")
    async with Client(server) as client:
        result = await client.call_tool("search", {"query": "tides"})
    assert not result.is_error
    assert result.structured_content["results"] == [
        {"title": "Tide tables", "url": "https://example.org/tides", "snippet": "Daily tides"}
    ]


async def test_a_failing_search_backend_is_a_tool_error_with_a_hint(site: str) -> None:
    server = build_server(search_backend="brave", brave_api_key="wrong-key", brave_url=f"{site}/brave")
    async with Client(server) as client:
        result = await client.call_tool("search", {"query": "tides"})
    assert result.is_error
    assert "HTTP 401" in result.content[0].text and "BRAVE_API_KEY" in result.content[0].text


def test_brave_without_a_key_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BRAVE_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["--search-backend", "brave"])
    assert exit_info.value.code == 2
    assert "BRAVE_API_KEY" in capsys.readouterr().err


# --- transports ---


async def test_fetch_works_over_streamable_http(site: str) -> None:
    port = free_port()
    args = ["-m", "agent.servers.web", "--http", f"127.0.0.1:{port}", "--allow-host", "127.0.0.1"]
    with running_server(args, port):
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            result = await client.call_tool("fetch", {"url": f"{site}/notes.txt"})
    assert not result.is_error
    assert NOTES in result.content[0].text
