"""Group fairness gaps as an evaluate module, backed by finetune.metrics.classification."""

import itertools

import datasets
import evaluate

from finetune.metrics.classification import demographic_parity_difference
from finetune.metrics.classification import equal_opportunity_difference

_DESCRIPTION = """\
Demographic parity difference (largest gap between groups in the rate of
predicting the positive label) and equal opportunity difference (largest gap
in true-positive rate; groups without true positives are skipped). 0 is parity.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: predicted labels (str or int).
    references: true labels, same type as predictions.
    groups: protected-group value per example (str or int).
    positive: the favourable label (e.g. "approved" or 1).
Returns:
    demographic_parity_difference, equal_opportunity_difference: floats in [0, 1].
"""

_CITATION = """\
@inproceedings{hardt2016equality,
    title = {Equality of Opportunity in Supervised Learning},
    author = {Hardt, Moritz and Price, Eric and Srebro, Nathan},
    booktitle = {Advances in Neural Information Processing Systems},
    year = {2016},
}
"""


class FtFairness(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # strings first: an int64 feature would silently turn "1" into 1
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value(label),
                        "references": datasets.Value(label),
                        "groups": datasets.Value(group),
                    }
                )
                for label, group in itertools.product(("string", "int64"), repeat=2)
            ],
        )

    def _compute(self, predictions, references, groups, positive):
        y_true, y_pred, g = list(references), list(predictions), list(groups)
        return {
            "demographic_parity_difference": demographic_parity_difference(y_pred, g, positive),
            "equal_opportunity_difference": equal_opportunity_difference(y_true, y_pred, g, positive),
        }
