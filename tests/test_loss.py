"""The token-weighted loss: plain and label-restricted terms, counted the way the step normaliser counts them."""
import torch
import torch.nn.functional as F

from finetune.train.batching import count_label_tokens
from finetune.train.loss import causal_lm_loss


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
