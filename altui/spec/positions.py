"""Where keys are written in experiments.toml, for file:line:column in issues: tomllib reports no
positions, so a small scanner reads the text once more.
"""

from __future__ import annotations

import re
from typing import Any

# ----------------------------------------------------------------------------------------------
# Positions: tomllib reports none, so a small scanner reads the text once more.

_HEADER = re.compile(r"\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")
_TOKEN = re.compile(r"[^\s,=\[\]{}#\"']+")


def scan_positions(text: str) -> dict[str, tuple[int, int]]:
    """Map key paths to where they are written: (line, column), both 1-based.

    Reads just what experiment files use: table headers, `key = value`, arrays and inline tables on
    one line or several. Paths are those of the issues: `defaults`, `defaults.epochs`,
    `experiment[2]` (its header), `experiment[2].methods[1]` (an array element),
    `experiment[2].methods[1].kd_alpha` (a key in an inline table). Multi-line strings are not
    understood; positions after one may be off (they only make messages less precise).
    """
    positions: dict[str, tuple[int, int]] = {}
    counts: dict[str, int] = {}  # [[name]] headers seen so far, to index them
    table = ""  # path of the current table; "" is the root
    stack: list[list[Any]] = []  # open arrays and inline tables: [path, "[" or "{", elements so far]
    pending: str | None = None  # path of a key read whose value comes next
    for lineno, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line) if not stack else None
        if header:
            table = _header_path(header, counts)
            where = (lineno, line.index("[") + 1)
            positions.setdefault(table, where)
            positions.setdefault(header.group(2), where)  # "experiment": its first header
            continue
        col = 0
        while col < len(line):
            ch = line[col]
            if ch in " \t,=":
                col += 1
            elif ch == "#":  # a comment runs to the end of the line
                break
            elif ch in "]}":
                if stack:
                    stack.pop()
                col += 1
            elif pending is None and (not stack or stack[-1][1] == "{"):
                # a key, in a table or an inline table
                name, col_after = _read_token(line, col)
                parent = stack[-1][0] if stack else table
                pending = f"{parent}.{name}" if parent else name
                positions.setdefault(pending, (lineno, col + 1))
                col = col_after
            else:
                # a value: of the pending key, or the next element of the open array
                if pending is not None:
                    path, pending = pending, None
                else:
                    path = f"{stack[-1][0]}[{stack[-1][2]}]"
                    stack[-1][2] += 1
                    positions.setdefault(path, (lineno, col + 1))
                if ch in "[{":
                    stack.append([path, ch, 0])
                    col += 1
                else:
                    col = _read_token(line, col)[1]
    return positions


def _header_path(header: re.Match[str], counts: dict[str, int]) -> str:
    """`[defaults]` -> "defaults"; the third `[[experiment]]` -> "experiment[2]";
    `[experiment.x]` -> "experiment[2].x" (a subtable belongs to the latest array element)."""
    name = header.group(2)
    if header.group(1) == "[[":
        counts[name] = counts.get(name, 0) + 1
        return f"{name}[{counts[name] - 1}]"
    head, _, rest = name.partition(".")
    if head in counts:
        head = f"{head}[{counts[head] - 1}]"
    return f"{head}.{rest}" if rest else head


def _read_token(line: str, col: int) -> tuple[str, int]:
    """The string or bare word starting at `col`, and the column after it."""
    quote = line[col]
    if quote in "\"'":
        end = col + 1
        while end < len(line) and line[end] != quote:
            end += 2 if quote == '"' and line[end] == "\\" else 1  # skip escaped characters
        return line[col + 1 : end], end + 1
    match = _TOKEN.match(line, col)
    end = match.end() if match else col + 1
    return line[col:end], end
