"""ROUGE-1/2/L computed in-house so scenario evaluators need no extra package.

Tokenisation and scoring follow Google's ``rouge_score`` (the reference the
literature reports against), so our numbers are comparable with published ones.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=1)
def _porter_stem() -> Callable[[str], str]:
    """nltk's Porter stemmer (the one rouge_score uses), imported only when asked for."""
    try:
        from nltk.stem.porter import PorterStemmer
    except ImportError as exc:  # pragma: no cover - nltk comes with rouge_score
        raise ImportError("rouge(use_stemmer=True) needs nltk: pip install nltk") from exc
    return PorterStemmer().stem


def tokenize(text: str, use_stemmer: bool = False) -> list[str]:
    """Lower-case, non-alphanumerics to spaces, stem words longer than 3 chars."""
    tokens = _NON_ALNUM.sub(" ", text.lower()).split()
    if use_stemmer:
        stem = _porter_stem()
        tokens = [stem(t) if len(t) > 3 else t for t in tokens]
    return [t for t in tokens if t]


def _fmeasure(overlap: int, n_pred: int, n_ref: int) -> float:
    if overlap == 0 or n_pred == 0 or n_ref == 0:
        return 0.0
    precision, recall = overlap / n_pred, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _ngram_f(pred: list[str], ref: list[str], n: int) -> float:
    p, r = _ngrams(pred, n), _ngrams(ref, n)
    overlap = sum(min(count, p[g]) for g, count in r.items())
    return _fmeasure(overlap, sum(p.values()), sum(r.values()))


def _lcs_length(a: list[str], b: list[str]) -> int:
    """Classic O(len(a)*len(b)) dynamic programme, one row kept at a time."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def _scores(pred: list[str], ref: list[str]) -> tuple[float, float, float]:
    return (
        _ngram_f(pred, ref, 1),
        _ngram_f(pred, ref, 2),
        _fmeasure(_lcs_length(pred, ref), len(pred), len(ref)),
    )


def rouge(
    predictions: list[str],
    references: list[str] | list[list[str]],
    use_stemmer: bool = False,
) -> dict[str, float]:
    """Mean per-example F-measure of ROUGE-1, ROUGE-2 and ROUGE-L.

    With several references for an example each ROUGE type takes the best
    reference for that type (as ``rouge_score``'s ``score_multi``). An empty
    prediction scores 0; an empty prediction list gives 0 for every key.
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"rouge: {len(predictions)} predictions but {len(references)} references; "
            "pass one reference (or list of references) per prediction"
        )
    totals = [0.0, 0.0, 0.0]
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        ref_list: Sequence[str] = [refs] if isinstance(refs, str) else refs
        if not ref_list:
            raise ValueError(f"rouge: example {i} has an empty reference list; give at least one reference")
        pred_tokens = tokenize(pred, use_stemmer)
        per_ref = [_scores(pred_tokens, tokenize(r, use_stemmer)) for r in ref_list]
        for k in range(3):
            totals[k] += max(s[k] for s in per_ref)
    n = max(len(predictions), 1)
    return {"rouge1": totals[0] / n, "rouge2": totals[1] / n, "rougeL": totals[2] / n}
