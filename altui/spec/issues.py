"""Problems in an experiments file (each with file:line:column, its key path and what is allowed), how
they are collected and placed at their key's position, and the reading of the TOML itself, after the
limits of altui.spec.limits.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from altui.spec.limits import MAX_FILE_BYTES, MAX_ISSUES_SHOWN, LimitError, check_nesting


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a file: where it is, which key, what is wrong and what is allowed."""

    file: str
    line: int | None
    column: int | None
    key: str  # key path, e.g. "experiment[2].methods[1].kd_alpha"; "" for TOML syntax errors
    message: str

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.file, self.line, self.column) if p is not None)
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class SpecError(Exception):
    """Every issue found in a file; str() puts each on its own line."""

    def __init__(self, issues: list[SpecIssue]):
        self.issues = list(issues)
        shown = [str(issue) for issue in self.issues[:MAX_ISSUES_SHOWN]]  # a 10 MB file is not 90,000 lines
        more = len(self.issues) - len(shown)
        super().__init__("\n".join(shown + ([f"... and {more:,} more problem(s) (the first {MAX_ISSUES_SHOWN} "
                                              "are shown)"] if more > 0 else [])))

    def __reduce__(self) -> tuple[Any, ...]:  # keep `issues` across pickling (worker processes)
        return (SpecError, (self.issues,))


def parse_toml(text: str, file: str) -> dict[str, Any]:
    """tomllib's document, after the limits that keep it from recursing or working for long."""
    try:
        if len(text) > MAX_FILE_BYTES:
            raise LimitError(f"file larger than {MAX_FILE_BYTES >> 20} MB; allowed: at most {MAX_FILE_BYTES:,} bytes")
        check_nesting(text)
        return tomllib.loads(text)
    except LimitError as e:
        raise SpecError([SpecIssue(file, e.line, e.column, "", str(e))]) from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError([syntax_issue(file, text, e)]) from None
    except ValueError as e:  # an integer of more than 4300 digits (Python's limit on converting text)
        raise SpecError([SpecIssue(file, None, None, "", f"invalid TOML: {e}")]) from None


# ----------------------------------------------------------------------------------------------
# Issues: each placed at its key's position (altui.spec.positions)

_PARENT = re.compile(r"(\.[^.\[\]]+|\[\d+\])$")


class Issues:
    """Collects issues, placing each at its key's position, else at its nearest enclosing one."""

    def __init__(self, file: str, positions: dict[str, tuple[int, int]]):
        self.file = file
        self.positions = positions
        self.items: list[SpecIssue] = []
        self._seen: set[SpecIssue] = set()

    def add(self, path: str, message: str) -> None:
        line, column = self.locate(path)
        issue = SpecIssue(self.file, line, column, path, message)
        if issue not in self._seen:  # the same value may be checked for several runs or sweep points
            self._seen.add(issue)
            self.items.append(issue)

    def locate(self, path: str) -> tuple[int | None, int | None]:
        while path:
            if path in self.positions:
                return self.positions[path]
            shorter = _PARENT.sub("", path)
            path = "" if shorter == path else shorter
        return None, None

    def sorted(self) -> list[SpecIssue]:
        return sorted(self.items, key=lambda i: (i.line is None, i.line or 0, i.column or 0))


_AT = re.compile(r" \(at line (\d+), column (\d+)\)| \(at end of document\)")


def syntax_issue(file: str, text: str, error: Exception) -> SpecIssue:
    """tomllib's message ends with "(at line L, column C)" or "(at end of document)"."""
    message = str(error)
    match = _AT.search(message)
    line, column = (int(match[1]), int(match[2])) if match and match[1] else (None, None)
    if match and not match[1]:
        line = max(1, len(text.splitlines()))
    return SpecIssue(file, line, column, "", f"invalid TOML: {_AT.sub('', message)}")
