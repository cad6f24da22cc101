"""Final-answer extraction and matching for numeric tasks (GSM8K-style)."""

from __future__ import annotations

import math
import re

# Optional sign, optional currency, digits with thousands commas or plain, optional decimals.
_NUMBER = re.compile(r"(?<![\w.])-?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?<![\w.])-?\$?\.\d+")
_ANSWER_MARK = "####"


def parse_number(text: str) -> float | None:
    """The number after ``####`` when present (GSM8K's answer mark), else the last number.

    Commas, ``$`` and a trailing ``%`` are dropped: ``"$1,234.5"`` -> 1234.5, ``"42%"`` -> 42.0.
    """
    if _ANSWER_MARK in text:
        after = text.rsplit(_ANSWER_MARK, 1)[1]
        first = _NUMBER.search(after)
        if first:
            return _to_float(first.group())
    found = _NUMBER.findall(text)
    return _to_float(found[-1]) if found else None


_MARKED = re.compile(rf"{_ANSWER_MARK}\s*({_NUMBER.pattern})")
_BARE = re.compile(rf"\s*({_NUMBER.pattern})%?\.?\s*")


def marked_number(text: str) -> float | None:
    """GSM8K's rule: the number right after the last ``####`` (commas dropped); None without one.

    Stricter than :func:`parse_number`: no last-number fallback, and words between the mark
    and the number ("#### about 12") make it a parse failure, as in GSM8K's own scoring.
    """
    if _ANSWER_MARK not in text:
        return None
    found = _MARKED.match(_ANSWER_MARK + text.rsplit(_ANSWER_MARK, 1)[1])
    return _to_float(found.group(1)) if found else None


def bare_number(text: str) -> float | None:
    """The number when the whole text is one number (``"1,234"``, ``"42%"``, ``"7."``), else None."""
    found = _BARE.fullmatch(text)
    return _to_float(found.group(1)) if found else None


def last_number(text: str) -> float | None:
    """The last number anywhere in the text: a lenient fallback, used only when asked for."""
    found = _NUMBER.findall(text)
    return _to_float(found[-1]) if found else None


def _to_float(token: str) -> float:
    return float(token.replace(",", "").replace("$", ""))


def numeric_match(pred: float | None, ref: float, rel_tol: float = 1e-3) -> bool:
    """Relative tolerance absorbs rounding in worded answers; abs 1e-9 handles refs near zero."""
    if pred is None or math.isnan(pred):
        return False
    return math.isclose(pred, ref, rel_tol=rel_tol, abs_tol=1e-9)


def exact_match(predictions: list[str], references: list[str]) -> float:
    """Share of predictions equal to their reference after stripping whitespace (0 when empty)."""
    if len(predictions) != len(references):
        raise ValueError(
            f"exact_match: {len(predictions)} predictions but {len(references)} references; lengths must match"
        )
    if not predictions:
        return 0.0
    return sum(p.strip() == r.strip() for p, r in zip(predictions, references)) / len(predictions)
