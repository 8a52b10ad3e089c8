"""Renders an lxml HTML element as Markdown: headings, paragraphs, lists, links, emphasis, code, quotes, tables.

Written for lxml trees rather than BeautifulSoup because it must stay fast on pages of megabytes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lxml.html import HtmlElement

_SPACE = re.compile(r"\s+")
# Elements whose content starts a new block; anything else is rendered inline.
BLOCK_TAGS = frozenset(
    """address article aside blockquote body center dd details dialog dir div dl dt fieldset figcaption figure
    footer form h1 h2 h3 h4 h5 h6 header hgroup hr html li main menu nav ol p pre section summary table tbody
    td tfoot th thead tr ul""".split()
)
_EMPHASIS = {"strong": "**", "b": "**", "em": "*", "i": "*", "del": "~~", "s": "~~", "strike": "~~"}


def to_markdown(root: HtmlElement) -> str:
    """Markdown for `root` and everything in it."""
    text = "\n\n".join(_blocks(root))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _tag(el: HtmlElement) -> str:
    return el.tag.lower() if isinstance(el.tag, str) else ""  # comments and processing instructions: ""


def _has_blocks(el: HtmlElement) -> bool:
    return any(_tag(child) in BLOCK_TAGS for child in el.iter() if child is not el)


def _blocks(el: HtmlElement) -> list[str]:
    """The Markdown blocks of a container: runs of inline content become paragraphs."""
    blocks: list[str] = []
    line: list[str] = []

    def flush() -> None:
        text = "\n".join(" ".join(part.split()) for part in "".join(line).split("\n")).strip()
        if text:
            blocks.append(text)
        line.clear()

    line.append(_SPACE.sub(" ", el.text or ""))
    for child in el:
        tag = _tag(child)
        if tag in BLOCK_TAGS:
            flush()
            blocks.extend(_block(child, tag))
        elif tag:
            line.append(_inline(child, tag))
        line.append(_SPACE.sub(" ", child.tail or ""))
    flush()
    return blocks


def _block(el: HtmlElement, tag: str) -> list[str]:
    if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
        text = " ".join(_inline_content(el).split())
        return [f"{'#' * int(tag[1])} {text}"] if text else []
    if tag in ("ul", "ol", "menu", "dir"):
        return _list(el, ordered=tag == "ol")
    if tag == "pre":
        return [_code_block(el)]
    if tag == "blockquote":
        inner = "\n\n".join(_blocks(el))
        return ["\n".join(f"> {line}" if line else ">" for line in inner.split("\n"))] if inner else []
    if tag == "hr":
        return ["---"]
    if tag == "table" and not _has_blocks_in_cells(el):
        return _table(el)
    if tag == "dt":
        text = " ".join(_inline_content(el).split())
        return [f"**{text}**"] if text else []
    return _blocks(el)


def _list(el: HtmlElement, *, ordered: bool) -> list[str]:
    start = el.get("start", "1")
    number = int(start) if start.isdigit() else 1
    items: list[str] = []
    for child in el:
        if not _tag(child):
            continue
        marker = f"{number}. " if ordered else "- "
        number += 1
        body = (
            "\n".join(_blocks(child)) if _tag(child) in ("li", "div") else _inline(child, _tag(child)).strip()
        )
        if not body:
            continue
        indent = " " * len(marker)
        lines = body.split("\n")
        items.append(marker + lines[0] + "".join(f"\n{indent}{line}" if line else "\n" for line in lines[1:]))
    return ["\n".join(items)] if items else []


def _code_block(el: HtmlElement) -> str:
    code = el.text_content().strip("\n")
    classes = " ".join(filter(None, [el.get("class"), *(c.get("class") for c in el.iter("code"))]))
    language = re.search(r"(?:language|lang)-([\w+#-]+)", classes)
    fence = "```" if "```" not in code else "~~~~"
    return f"{fence}{language.group(1) if language else ''}\n{code}\n{fence}"


def _has_blocks_in_cells(table: HtmlElement) -> bool:
    """Layout tables (cells holding paragraphs, lists or tables) read better as plain blocks."""
    return any(_has_blocks(cell) for cell in table.iter("td", "th"))


def _table(table: HtmlElement) -> list[str]:
    rows = []
    for row in table.iter("tr"):
        cells = [
            " ".join(_inline_content(cell).split()).replace("|", "\\|")
            for cell in row
            if _tag(cell) in ("td", "th")
        ]
        if any(cells):
            rows.append(cells)
    if not rows:
        return []
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|" + " --- |" * width)
    caption = table.find("caption")
    heading = [" ".join(caption.text_content().split())] if caption is not None else []
    return [*heading, "\n".join(lines)]


def _inline_content(el: HtmlElement) -> str:
    parts = [_SPACE.sub(" ", el.text or "")]
    for child in el:
        tag = _tag(child)
        if tag:
            parts.append(_inline(child, tag))
        parts.append(_SPACE.sub(" ", child.tail or ""))
    return "".join(parts)


def _inline(el: HtmlElement, tag: str) -> str:
    if tag == "br":
        return "\n"
    if tag == "code" or tag == "kbd" or tag == "samp":
        code = " ".join(el.text_content().split())
        if not code:
            return ""
        tick = "``" if "`" in code else "`"
        return f"{tick}{code}{tick}"
    text = _inline_content(el)
    if tag in BLOCK_TAGS:  # a block inside inline content (a card inside a link): keep it apart with spaces
        return f" {text} "
    if tag == "a":
        href = el.get("href")
        label = " ".join(text.split())
        if not href or not label:
            return text
        return _keep_spaces(text, f"<{href}>" if label == href else f"[{label}]({href.replace(' ', '%20')})")
    mark = _EMPHASIS.get(tag)
    if mark and text.strip():
        return _keep_spaces(text, f"{mark}{' '.join(text.split())}{mark}")
    return text


def _keep_spaces(original: str, rendered: str) -> str:
    """`rendered` with the spaces `original` had around it, so words do not run together."""
    before = " " if original[:1].isspace() else ""
    after = " " if original[-1:].isspace() else ""
    return f"{before}{rendered}{after}"
