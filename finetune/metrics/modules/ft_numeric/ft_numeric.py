"""Final-answer accuracy for numeric tasks as an evaluate module, backed by finetune.metrics.numeric."""

import datasets
import evaluate

from finetune.metrics.numeric import exact_match
from finetune.metrics.numeric import numeric_match
from finetune.metrics.numeric import parse_number

_DESCRIPTION = """\
Parses the final number of each prediction (the number after "####" when present,
else the last number; commas, "$" and "%" dropped) and compares it with the
reference number at a relative tolerance. String references are parsed the same
way (e.g. a GSM8K answer ending in "#### 72") and also scored by exact match.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: generated texts.
    references: reference numbers (float) or reference texts (str).
    rel_tol: relative tolerance of the numeric comparison (default 1e-3).
Returns:
    numeric_accuracy: share of predictions whose number matches the reference.
    parse_rate: share of predictions in which a number was found.
    exact_match: share of stripped predictions equal to the reference (string references only).
"""

_CITATION = """\
@article{cobbe2021gsm8k,
    title = {Training Verifiers to Solve Math Word Problems},
    author = {Cobbe, Karl and Kosaraju, Vineet and Bavarian, Mohammad and others},
    journal = {arXiv preprint arXiv:2110.14168},
    year = {2021},
}
"""


class FtNumeric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value(kind)})
                for kind in ("string", "float64")
            ],
        )

    def _compute(self, predictions, references, rel_tol=1e-3):
        preds, refs = list(predictions), list(references)
        scores = {}
        if refs and isinstance(refs[0], str):
            scores["exact_match"] = exact_match(preds, refs)
            refs = [_reference_number(i, r) for i, r in enumerate(refs)]
        parsed = [parse_number(p) for p in preds]
        n = max(len(preds), 1)
        scores["numeric_accuracy"] = sum(numeric_match(p, r, rel_tol) for p, r in zip(parsed, refs)) / n
        scores["parse_rate"] = sum(p is not None for p in parsed) / n
        return scores


def _reference_number(index, text):
    value = parse_number(text)
    if value is None:
        raise ValueError(f"ft_numeric: reference {index} has no number ({text[:60]!r}); pass numeric references")
    return value
