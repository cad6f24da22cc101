"""Accuracy, F1, MCC and (given probabilities) Brier/ECE as an evaluate module.

Backed by finetune.metrics.classification; labels may be strings or integers.
"""

import datasets
import evaluate

from finetune.metrics.classification import accuracy
from finetune.metrics.classification import brier
from finetune.metrics.classification import ece
from finetune.metrics.classification import f1
from finetune.metrics.classification import mcc

_DESCRIPTION = """\
Classification scores on label lists: accuracy, macro and weighted F1, Matthews
correlation (multi-class form), plus binary F1 when pos_label is given. When
probabilities of the positive class are passed, also the Brier score and the
expected calibration error (equal-width bins on P(positive)).
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: predicted labels (str or int).
    references: true labels, same type as predictions.
    pos_label: the positive label; adds "f1" (binary) and is needed for brier/ece
        unless the labels are 0/1.
    probabilities: optional P(pos_label) per example; adds "brier" and "ece".
    bins: number of ECE bins (default 10).
Returns:
    accuracy, f1_macro, f1_weighted, mcc, and f1, brier, ece when applicable.
"""

_CITATION = """\
@article{matthews1975,
    title = {Comparison of the predicted and observed secondary structure of T4 phage lysozyme},
    author = {Matthews, B. W.},
    journal = {Biochimica et Biophysica Acta (BBA) - Protein Structure},
    volume = {405},
    number = {2},
    pages = {442--451},
    year = {1975},
}
"""


class FtClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # strings first: an int64 feature would silently turn "1" into 1
            features=[
                datasets.Features({"predictions": datasets.Value(kind), "references": datasets.Value(kind)})
                for kind in ("string", "int64")
            ],
        )

    def _compute(self, predictions, references, pos_label=None, probabilities=None, bins=10):
        y_true, y_pred = list(references), list(predictions)
        scores = {
            "accuracy": accuracy(y_true, y_pred),
            "f1_macro": f1(y_true, y_pred, average="macro"),
            "f1_weighted": f1(y_true, y_pred, average="weighted"),
            "mcc": mcc(y_true, y_pred),
        }
        if pos_label is not None or set(y_true) | set(y_pred) <= {0, 1}:
            scores["f1"] = f1(y_true, y_pred, average="binary", pos_label=pos_label)
        if probabilities is not None:
            positive = 1 if pos_label is None else pos_label
            outcomes = [int(t == positive) for t in y_true]
            scores["brier"] = brier(list(probabilities), outcomes)
            scores["ece"] = ece(list(probabilities), outcomes, bins=bins)
        return scores
