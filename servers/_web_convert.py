"""Turns a fetched body into text a model can read: HTML to Markdown (main content), JSON, text, PDF.

lxml and pypdf are imported on first use.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin

if TYPE_CHECKING:
    from lxml.html import HtmlElement

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
PDF_TYPES = frozenset({"application/pdf", "application/x-pdf"})
TEXT_TYPES = frozenset(
    {
        "application/xml",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/sql",
        "application/x-sh",
        "application/x-ndjson",
        "application/csv",
    }
)
SUPPORTED = "HTML, JSON, XML, plain text and PDF"

# Elements that never carry the page's content.
_NOISE_TAGS = [
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "canvas",
    "iframe",
    "object",
    "embed",
    "button",
    "input",
    "select",
    "textarea",
    "img",
    "picture",
    "video",
    "audio",
    "map",
    "dialog",
]
# Page chrome; dropped when outside the chosen main element.
_CHROME_TAGS = ["nav", "header", "footer", "aside"]
_CHROME_ROLE_QUERY = " | ".join(
    f".//*[@role='{role}']"
    for role in ("navigation", "banner", "contentinfo", "complementary", "search", "menubar")
)
_HIDDEN = "//*[@hidden or @aria-hidden='true' or contains(translate(@style, ' ', ''), 'display:none')]"
_POSITIVE = re.compile(r"article|body|content|entry|main|page|post|story|text", re.IGNORECASE)
_NEGATIVE = re.compile(
    r"comment|combx|disqus|foot|masthead|menu|nav|related|remark|share|shoutbox|sidebar|social|sponsor|widget|"
    r"\bads?\b|advert|banner|breadcrumb|cookie|consent|newsletter|popup|promo|subscribe",
    re.IGNORECASE,
)


class UnsupportedContentError(Exception):
    """The body is of a kind this server does not turn into text."""


@dataclass
class Converted:
    """Readable text of a page, and its title when it has one."""

    text: str
    title: str | None = None
    kind: str = "text"  # html, markdown (converted HTML), json, text or pdf


def kind_of(media_type: str, body: bytes) -> str | None:
    """ "html", "json", "text", "pdf", or None when unsupported; sniffs bodies sent without a useful type."""
    if media_type in HTML_TYPES:
        return "html"
    if media_type in PDF_TYPES:
        return "pdf"
    if media_type == "application/json" or media_type.endswith("+json"):
        return "json"
    if media_type.startswith("text/") or media_type in TEXT_TYPES or media_type.endswith("+xml"):
        return "text"
    if media_type in ("", "application/octet-stream", "binary/octet-stream"):
        head = body[:1024].lstrip()
        if head.startswith(b"%PDF-"):
            return "pdf"
        if media_type == "" and b"\0" not in head:
            return "html" if re.match(rb"(?i)<(!doctype html|html|head|body)\b", head) else "text"
    return None


def convert(body: bytes, media_type: str, charset: str | None, url: str, *, raw: bool = False) -> Converted:
    """Readable text of `body`; `raw` keeps HTML and JSON as sent. Raises `UnsupportedContentError`."""
    kind = kind_of(media_type, body)
    if kind is None:
        raise UnsupportedContentError(
            f"Cannot show content of type {media_type!r} ({len(body)} bytes) from {url}: "
            f"the fetch tool reads {SUPPORTED}."
        )
    if kind == "pdf":
        return pdf_to_text(body, url)
    text = decode(body, charset, sniff_html=kind == "html")
    if raw:
        return Converted(text=text, kind=kind)
    if kind == "html":
        title, markdown = html_to_markdown(text, url)
        return Converted(text=markdown, title=title, kind="markdown")
    if kind == "json":
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pass  # not valid JSON (or cut short): show it as sent
        return Converted(text=text, kind="json")
    return Converted(text=text, kind="text")


def decode(body: bytes, charset: str | None, *, sniff_html: bool = False) -> str:
    """Text of `body` by its declared charset, a BOM, an HTML meta tag, UTF-8, then Windows-1252."""
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if body.startswith(bom):
            return body.decode(name, "replace")
    if charset is None and sniff_html:
        meta = re.search(rb"""<meta[^>]+charset\s*=\s*["']?([\w.:-]+)""", body[:4096], re.IGNORECASE)
        charset = meta.group(1).decode("ascii") if meta else None
    if charset:
        try:
            return body.decode(charset, "replace")
        except LookupError:
            pass  # an unknown charset name: guess below
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(body) - 3:  # a character cut in half by the size limit
            return body.decode("utf-8", "replace")
        return body.decode("cp1252", "replace")


def html_to_markdown(html: str, url: str) -> tuple[str | None, str]:
    """The title and the main content of an HTML page as Markdown, links made absolute."""
    import lxml.html
    from lxml import etree

    from agent.servers._web_markdown import to_markdown

    # lxml refuses str input that carries an XML encoding declaration; the text is decoded already.
    html = re.sub(r"^\s*<\?xml[^>]*\?>", "", html)
    try:
        doc = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return None, ""
    title = _title(doc)
    base = doc.xpath("//base/@href")
    base_url = urljoin(url, str(base[0])) if base else url
    etree.strip_elements(doc, etree.Comment, *_NOISE_TAGS, with_tail=False)
    for el in doc.xpath(_HIDDEN):
        el.drop_tree()
    _absolutize_links(doc, base_url)

    main = _main_element(doc)
    if main is None:
        main = doc.body if doc.find("body") is not None else doc
        _drop_chrome(main)
        part = _content_part(main)
        main = main if part is None else part
    else:
        _drop_chrome(main, keep_headers=True)
    return title, to_markdown(main)


def _title(doc: HtmlElement) -> str | None:
    candidates = [
        doc.findtext(".//title"),
        *doc.xpath("//meta[@property='og:title']/@content")[:1],
        *[h1.text_content() for h1 in doc.iter("h1")][:1],
    ]
    for text in candidates:
        if text and text.strip():
            return " ".join(str(text).split())
    return None


def _absolutize_links(doc: HtmlElement, base_url: str) -> None:
    for link in list(doc.iter("a")):
        href = (link.get("href") or "").strip()
        if not href or href.startswith("#") or href.lower().startswith(("javascript:", "data:")):
            link.drop_tag()  # in-page and script links are noise to a reader: keep the text only
        else:
            link.attrib.clear()
            link.set("href", urljoin(base_url, href))


def _main_element(doc: HtmlElement) -> HtmlElement | None:
    """The element the page marks as its main content: <main>, role=main, or its only <article>."""
    marked = doc.xpath("//main | //*[@role='main']")
    if marked:
        return marked[0]
    articles = doc.xpath("//article")
    return articles[0] if len(articles) == 1 else None


def _drop_chrome(root: HtmlElement, *, keep_headers: bool = False) -> None:
    tags = [tag for tag in _CHROME_TAGS if not (keep_headers and tag == "header")]
    query = " | ".join(f".//{tag}" for tag in tags) + " | " + _CHROME_ROLE_QUERY
    for el in root.xpath(query):
        el.drop_tree()


def _content_part(body: HtmlElement) -> HtmlElement | None:
    """For a page without semantic markup, the element holding most of its prose (readability's idea):
    paragraphs score for their parent and grandparent, by length and commas, less their share of link text."""
    scores: dict[HtmlElement, float] = {}
    for para in body.iter("p", "pre", "td", "blockquote"):
        text = " ".join(para.text_content().split())
        if len(text) < 25:
            continue
        score = 1 + text.count(",") + min(len(text) // 100, 3)
        parent = para.getparent()
        grandparent = parent.getparent() if parent is not None else None
        for el, share in ((parent, 1.0), (grandparent, 0.5)):
            if el is not None:
                scores[el] = scores.get(el, _class_weight(el)) + score * share
    if not scores:
        return None
    ranked = {el: score * (1 - _link_density(el)) for el, score in scores.items()}
    best = max(ranked, key=ranked.__getitem__)
    parent = best.getparent()
    # An article split over sibling blocks: take their common parent.
    if parent is not None and sum(ranked.get(el, 0) for el in parent if el is not best) >= 0.3 * ranked[best]:
        best = parent
    # A short pick from a long page is usually wrong (link lists, indexes): keep the whole page then.
    if len(" ".join(best.text_content().split())) < 0.3 * len(" ".join(body.text_content().split())):
        return None
    return best


def _class_weight(el: HtmlElement) -> float:
    hints = f"{el.get('class', '')} {el.get('id', '')}"
    return (25 if _POSITIVE.search(hints) else 0) - (25 if _NEGATIVE.search(hints) else 0)


def _link_density(el: HtmlElement) -> float:
    text = len(el.text_content()) or 1
    return min(1.0, sum(len(link.text_content()) for link in el.iter("a")) / text)


def pdf_to_text(body: bytes, url: str) -> Converted:
    """The text of each page of a PDF, and its title from the metadata."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(body))
        if reader.is_encrypted:
            reader.decrypt("")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    # pypdf raises NotImplementedError for stream filters and encryption schemes it does not support: such a
    # PDF is reported as unreadable, like a damaged one.
    except (PyPdfError, ValueError, KeyError, OSError, NotImplementedError) as exc:
        raise UnsupportedContentError(f"Could not read the PDF from {url}: {exc}") from None
    if not any(pages):
        text = f"(The PDF has {len(pages)} page(s) but no extractable text; it may be scanned images.)"
    else:
        text = "\n\n".join(f"[Page {n}]\n{page}" for n, page in enumerate(pages, 1))
    return Converted(text=text, title=title.strip() if title and title.strip() else None, kind="pdf")
