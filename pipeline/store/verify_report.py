"""What ``store verify`` reports: each :class:`Problem` found, the :class:`VerifyReport`, and
:class:`Findings`, which records problems into a report (a long list of one kind shortened)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SHOWN = 5
"""Problems of one kind listed one by one; the rest are counted in one more line."""


@dataclass(frozen=True)
class Problem:
    """One way the store differs from what it declares.

    ``file`` is relative to the store root; ``where`` the row, dataset or field.
    """

    file: str
    where: str
    message: str
    expected: Any = None
    found: Any = None

    def __str__(self) -> str:
        place = f"{self.file} [{self.where}]" if self.where else self.file
        detail = (f" (expected {self.expected}, found {self.found})"
                  if self.expected is not None or self.found is not None else "")
        return f"{place}: {self.message}{detail}"


@dataclass
class VerifyReport:
    """What :func:`verify_store` found; the store is sound when ``problems`` is empty.

    ``notes`` are harmless findings (leftover temporary files, undeclared datasets).
    """

    url: str
    store_id: str | None = None
    shards: int = 0
    rows: int = 0
    bytes_hashed: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class Findings:
    """Records problems into ``report``: the checks of the store's tables and those of its
    shards share one report."""

    def __init__(self, report: VerifyReport) -> None:
        self.report = report

    def problem(self, file: str, where: str, message: str, expected: Any = None,
                found: Any = None) -> None:
        self.report.problems.append(Problem(file, where, message, expected, found))

    def problems(self, file: str, items: list[tuple[str, str]], kind: str,
                 total: int | None = None) -> None:
        """One problem per ``(where, message)`` for the first few, then a count of the rest."""
        for where, message in items[:SHOWN]:
            self.problem(file, where, message)
        rest = (len(items) if total is None else total) - SHOWN
        if rest > 0:
            self.problem(file, "", f"{rest} more {kind}")
