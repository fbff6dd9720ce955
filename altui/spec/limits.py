"""Limits on an experiments file, checked before tomllib parses it or anything is expanded: its size,
how deep its arrays, inline tables and keys nest, and how long a name or string may be. tomllib
parses nested arrays by recursion (a few thousand `[` end in a RecursionError), and every later
step (JSON for the store, comparisons) recurses over the tables too; a legitimate file nests four
levels at most and is a few kilobytes.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 1 << 20  # 1 MiB: a file of a thousand experiments is ~200 kB
MAX_NESTING = 32  # arrays, inline tables and table/key levels, all together
MAX_NAME = 100  # characters of an experiment or method name (run names join several)
MAX_STRING = 4096  # characters of any other string (PATH_MAX on Linux)
MAX_ISSUES_SHOWN = 20  # problems printed; the rest are counted


class LimitError(ValueError):
    """A file over a limit: the message says which limit, and where (line, column) when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.line, self.column = line, column


def read_bounded(path: Path) -> str:
    """The text of a regular file of at most MAX_FILE_BYTES. A FIFO or a device (/dev/zero) is
    refused before it is opened for reading, which could block or never end."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise LimitError("not a regular file; give an experiments file (.toml)")
    if info.st_size > MAX_FILE_BYTES:
        raise LimitError(f"file larger than {MAX_FILE_BYTES >> 20} MB ({info.st_size:,} bytes); allowed: "
                         f"at most {MAX_FILE_BYTES:,} bytes (split it into several files)")
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)  # the file may grow after the stat
    if len(data) > MAX_FILE_BYTES:
        raise LimitError(f"file larger than {MAX_FILE_BYTES >> 20} MB; allowed: at most {MAX_FILE_BYTES:,} bytes")
    return data.decode("utf-8-sig")  # -sig: a leading byte-order mark is fine


# What the nesting scan stops at: string openers, comments, brackets, separators, newlines, dots.
_SPECIAL = re.compile(r'"""|\'\'\'|["\'#\[\]{}\n=,.]')
_CLOSE = {'"""': re.compile(r'(?:[^"\\]|\\.|"(?!""))*"""(?:"{0,2})', re.S),
          "'''": re.compile(r".*?'''(?:'{0,2})", re.S),
          '"': re.compile(r'(?:[^"\\\n]|\\.)*"'), "'": re.compile(r"[^'\n]*'")}


def check_nesting(text: str) -> None:
    """Refuse arrays and inline tables nested deeper than MAX_NESTING, before tomllib recurses into
    them, and dotted keys of more parts (tomllib's time grows with the square of their parts: 100,000
    take minutes). Strings and comments are skipped; an unclosed one ends the scan (tomllib then
    reports it). Dots are counted between separators: a number holds one at most, a key one per part."""
    depth, dots, line, line_start, pos = 0, 0, 1, 0, 0
    while True:
        match = _SPECIAL.search(text, pos)
        if match is None:
            return
        token, pos = match.group(), match.end()
        if token == ".":
            dots += 1
            if dots >= MAX_NESTING:
                raise LimitError(f"a dotted key nested deeper than {MAX_NESTING} levels", line,
                                 match.start() - line_start + 1)
            continue
        if token not in _CLOSE:
            dots = 0
        if token == "\n":
            line, line_start = line + 1, pos
        elif token == "#":
            end = text.find("\n", pos)
            pos = len(text) if end < 0 else end
        elif token in _CLOSE:
            closed = _CLOSE[token].match(text, pos)
            if closed is None:
                return
            last = text.rfind("\n", pos, closed.end())  # multi-line strings span lines
            if last >= 0:
                line, line_start = line + text.count("\n", pos, closed.end()), last + 1
            pos = closed.end()
        elif token in "[{":
            depth += 1
            if depth > MAX_NESTING:
                raise LimitError(f"nesting deeper than {MAX_NESTING} levels (arrays and inline tables)",
                                 line, match.start() - line_start + 1)
        elif token in "]}":
            depth = max(0, depth - 1)


def deepest(doc: dict[str, Any]) -> tuple[int, list[str]]:
    """How deep the parsed tables nest (dotted keys make tables too), and the path of the first
    table or array at that depth; without recursion."""
    best: tuple[int, list[str]] = (0, [])
    stack: list[tuple[Any, int, list[str]]] = [(doc, 0, [])]
    while stack:
        value, depth, path = stack.pop()
        if depth > best[0]:
            best = (depth, path)
            if depth > MAX_NESTING:
                return best
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, child in items:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1, [*path, f"[{key}]" if isinstance(key, int) else f".{key}"]))
    return best


def issue_path(parts: list[str], keep: int = 3) -> str:
    """The first `keep` parts of a deep path, as an issue's key path ("experiment[0].a.b")."""
    return "".join(parts[:keep]).lstrip(".")
