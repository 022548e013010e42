"""What decoding skipped and the time it cost: a :class:`DecodeReport` for the caller, and the
tally one decoding pass keeps (:class:`Damage`) that holds it against the
:class:`~pipeline.extract_config.DecodeSpec` rule and raises ``corrupt_media`` past it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.extract_config import DecodeSpec
from pipeline.failures import ClipError, Reason, Stage

logger = logging.getLogger(__name__)

TRUNCATION_TOLERANCE_S = 0.5
"""A stream that stops less than this before its declared end, without a decoding error, is
taken at its word: headers round their durations. A larger shortfall is lost time (a cut file)."""

DEFAULT_DECODE = DecodeSpec()


@dataclass
class DecodeReport:
    """What decoding one stream over an interval met. Filled in by :func:`iter_frames` and
    :func:`read_audio` when they finish, also when they raise ``corrupt_media`` for it.

    Attributes:
        stream: ``video`` or ``audio``.
        errors: packets that could not be read or decoded, skipped.
        expected_s: seconds of the stream the interval asks for (the interval cut to what the
            stream declares or decodes).
        lost_s: seconds of ``expected_s`` that decoding left without frames or samples
            (:class:`~pipeline.extract_config.DecodeSpec` says what counts).
        longest_gap_s: the longest stretch of lost time, seconds.
        gap_at_s: where it starts, seconds from the container start.
        first_error: what went wrong with the first skipped packet ("" when none).
    """

    stream: str = ""
    errors: int = 0
    expected_s: float = 0.0
    lost_s: float = 0.0
    longest_gap_s: float = 0.0
    gap_at_s: float = 0.0
    first_error: str = ""

    @property
    def coverage(self) -> float:
        """Fraction of the expected time that decoded (1.0 when nothing was expected)."""
        if self.expected_s <= 0:
            return 1.0
        return max(0.0, 1.0 - self.lost_s / self.expected_s)


class Damage:
    """The packets one decoding pass skipped and the stretches of time they (or a cut) left
    empty; :meth:`judge` holds them against the rule and fills the caller's report."""

    def __init__(self, path: str | Path, kind: str, rule: DecodeSpec,
                 report: DecodeReport | None) -> None:
        self.path, self.kind, self.rule = path, kind, rule
        self.report = report if report is not None else DecodeReport()
        self.errors = 0
        self._first = ""
        self._gaps: list[tuple[float, float]] = []

    def skipped(self, err: Exception, what: str) -> None:
        if not self.errors:
            self._first = f"{what}: {err}"
        self.errors += 1
        logger.debug("%s: %s %s skipped: %s", self.path, self.kind, what, err)

    def lost(self, begin: float, end: float) -> None:
        if end > begin:
            self._gaps.append((begin, end))

    def nothing_decoded(self) -> None:
        """Raise ``corrupt_media`` when packets were skipped and none decoded."""
        if self.errors:
            raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                            f"{self.path}: no {self.kind} packet decodes ({self.errors} "
                            f"skipped); first error: {self._first}")

    def tail(self, decoded_end: float, end: float, declared_end: float | None,
             errors_before: int) -> float:
        """Record a stream that stops before it should: after an undecodable packet, or
        more than :data:`TRUNCATION_TOLERANCE_S` before its declared end (a cut file).

        Returns:
            The end of the stretch the stream was expected to cover.
        """
        target = min(end, declared_end if declared_end is not None else decoded_end)
        if target - decoded_end > TRUNCATION_TOLERANCE_S or self.errors > errors_before:
            self.lost(decoded_end, target)
        return min(end, max(target, decoded_end))

    def judge(self, lo: float, hi: float) -> None:
        """Fill the report for ``[lo, hi)``; raise ``corrupt_media`` past the rule."""
        gaps = [(max(a, lo), min(b, hi)) for a, b in self._gaps if min(b, hi) > max(a, lo)]
        longest = max(gaps, key=lambda g: g[1] - g[0], default=(0.0, 0.0))
        r = self.report
        r.stream, r.errors, r.first_error = self.kind, self.errors, self._first
        r.expected_s, r.lost_s = max(0.0, hi - lo), sum(b - a for a, b in gaps)
        r.longest_gap_s, r.gap_at_s = longest[1] - longest[0], longest[0]
        if r.coverage < self.rule.min_coverage or r.longest_gap_s > self.rule.max_gap_s:
            first = f"; first error: {r.first_error}" if r.first_error else ""
            packets = (f"{r.errors} undecodable packet(s)" if r.errors else
                       "no undecodable packet (the timestamps jump, or the file is cut)")
            raise ClipError(Stage.DECODE, Reason.CORRUPT_MEDIA,
                            f"{self.path}: {self.kind} too damaged to use: {packets}, "
                            f"{r.coverage:.1%} of [{lo:.2f}, {hi:.2f}) s "
                            f"decoded (needs {self.rule.min_coverage:.0%}), longest gap "
                            f"{r.longest_gap_s:.2f} s at {r.gap_at_s:.2f} s (allows "
                            f"{self.rule.max_gap_s:g} s){first}")
