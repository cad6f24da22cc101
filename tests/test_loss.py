"""The token-weighted loss: plain and label-restricted terms, counted the way the step normaliser counts them."""

import torch
import torch.nn.functional as F

from finetune.data.tokenized import count_label_tokens
from finetune.model.loss import causal_lm_loss


def test_plain_and_restricted_terms_and_counts():
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 6)
    labels = torch.tensor([[-100, -100, 3, 5]])  # position 2 holds the decision (3 among {3, 1}), then eos 5
    choice_index = torch.tensor([[-1, -1, 0, -1]])
    choice_ids = torch.tensor([[3, 1]])
    total, count = causal_lm_loss(logits, labels, choice_index, choice_ids)
    plain = F.cross_entropy(logits[0, 1], torch.tensor(3)) + F.cross_entropy(logits[0, 2], torch.tensor(5))
    restricted = F.cross_entropy(logits[0, 1, [3, 1]].unsqueeze(0), torch.tensor([0]))
    assert torch.allclose(total, plain + restricted)
    assert int(count) == 3
    example = {"input_ids": [0, 0, 3, 5], "labels": labels[0].tolist(), "choice_index": choice_index[0].tolist()}
    assert count_label_tokens([example]) == 3


def test_without_choices_it_is_summed_cross_entropy():
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, 1, 2, 3, -100], [-100, -100, 4, 4, 4]])
    total, count = causal_lm_loss(logits, labels)
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
    assert torch.allclose(total, ref) and int(count) == 6


def test_example_average_gives_every_example_the_same_weight():
    """data.loss_average: example -- the step loss is the mean of each example's own mean loss."""
    from finetune.data.tokenized import TokenizedData, weigh_examples
    from finetune.train.batching import collate

    torch.manual_seed(0)
    short = {"input_ids": [1, 2, 3, 5], "labels": [-100, -100, 3, 5], "choice_index": [-1, -1, 0, -1]}
    long = {"input_ids": [1, 2, 4, 4, 4, 4, 5], "labels": [-100, 2, 4, 4, 4, 4, 5], "choice_index": [-1] * 7}
    data = weigh_examples(TokenizedData(examples=[short, long], choice_sets=[[3, 1]], pad_id=0))
    assert abs(count_label_tokens(data.examples) - 2) < 1e-9  # two examples, whatever their lengths
    batch = collate(data.examples, 0)
    logits = torch.randn(2, 7, 6)
    choice_ids = torch.tensor([[3, 1]])
    total, count = causal_lm_loss(logits, batch["labels"], batch["choice_index"], choice_ids, batch["loss_weight"])
    assert abs(float(count) - 2.0) < 1e-6
    own = []
    for i, e in enumerate((short, long)):
        n = len(e["labels"])
        s, c = causal_lm_loss(
            logits[i : i + 1, :n], torch.tensor([e["labels"]]), torch.tensor([e["choice_index"]]), choice_ids
        )
        own.append(float(s / c))
    assert abs(float(total / count) - sum(own) / 2) < 1e-5
    plain_total, plain_count = causal_lm_loss(logits, batch["labels"], batch["choice_index"], choice_ids)
    assert int(plain_count) == 9 and abs(float(plain_total / plain_count) - sum(own) / 2) > 1e-3  # token mean differs


def test_unit_weights_equal_the_plain_loss():
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, 1, 2, 3, -100], [-100, -100, 4, 4, 4]])
    a = causal_lm_loss(logits, labels)
    b = causal_lm_loss(logits, labels, weights=torch.ones(2, 5))
    assert torch.allclose(a[0], b[0]) and float(a[1]) == float(b[1])
