"""ROUGE-1/2/L as an evaluate module, backed by finetune.metrics.text.rouge (no Hub access)."""

import datasets
import evaluate

from finetune.metrics.text import rouge

_DESCRIPTION = """\
Mean per-example ROUGE-1, ROUGE-2 and ROUGE-L F-measure. Tokenisation as rouge_score:
lower-case, non-alphanumerics to spaces, optional Porter stemming. With several
references for an example the best reference is taken per ROUGE type.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: list of generated texts.
    references: list of reference texts, or list of lists of reference texts.
    use_stemmer: apply Porter stemming to words longer than 3 characters.
Returns:
    rouge1, rouge2, rougeL: floats in [0, 1].
"""

_CITATION = """\
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    publisher = "Association for Computational Linguistics",
    pages = "74--81",
}
"""


class FtRouge(evaluate.Metric):
    def _info(self):
        text = datasets.Value("string")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": text, "references": datasets.Sequence(text)}),
                datasets.Features({"predictions": text, "references": text}),
            ],
            reference_urls=["https://aclanthology.org/W04-1013/"],
        )

    def _compute(self, predictions, references, use_stemmer=False):
        return rouge(list(predictions), list(references), use_stemmer=use_stemmer)
