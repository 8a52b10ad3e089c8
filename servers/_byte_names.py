"""File names that are not valid UTF-8: how they are shown to clients, and how a shown name is read back.

POSIX names are bytes; Python gives undecodable bytes as lone surrogates, which JSON cannot carry. Such a
byte is shown as the text `\\xNN` (b"caf\\xe9.txt" -> "caf\\xe9.txt"), the convention the repository packer
uses too. A path a client sends back is used as given when it exists, else with its `\\xNN` read as bytes.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])")  # backslashreplace only ever escapes bytes >= 0x80


def show(text: str) -> str:
    """`text` with every undecodable byte (a lone surrogate) written as `\\xNN`, safe to put on the wire."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte, e.g. sent by a client
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")


def show_all(value: object) -> object:
    """`value` (JSON-like: dicts, lists, strings) with `show` applied to every string in it, keys included."""
    if isinstance(value, str):
        return show(value)
    if isinstance(value, dict):
        return {show_all(key): show_all(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [show_all(item) for item in value]
    return value


def unescape(path: str) -> str | None:
    """The path a shown name stands for (`\\xNN` read as those bytes), or None when it has no such escape."""
    if not _ESCAPE.search(path):
        return None
    raw = bytearray()
    position = 0
    try:
        for match in _ESCAPE.finditer(path):
            raw += path[position : match.start()].encode("utf-8", "surrogateescape")
            raw.append(int(match.group(1), 16))
            position = match.end()
        raw += path[position:].encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # lone surrogates that stand for no byte: no file can have this name
        return None
    return raw.decode("utf-8", "surrogateescape")
