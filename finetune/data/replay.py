"""data.replay: general text mixed into the fine-tuning data with a plain language-model loss.

The remedy for forgetting (Ibrahim et al. 2024; Biderman et al. 2024): a small share of the
training sequences is general text, every token scored. The replayed rows are appended to the
training examples as a pure function of (seed, text, the task rows' lengths), so the batch plan,
which shuffles examples by (seed, epoch), mixes them through every epoch and a resumed run
rebuilds exactly the same rows.

Each replayed row is as long as a task row drawn by seed (capped at ``max_length``): length
grouping then batches replay beside task rows of the same length instead of in batches of their
own, and replay takes about ``fraction`` of the tokens as well as of the sequences.
"""

from __future__ import annotations

import math
import random
from typing import Any

from finetune.data.tokenized import Example, TokenizedData

MIN_LENGTH = 16  # a replayed row shorter than this teaches little; label rows can be shorter


def replay_count(n_task: int, fraction: float) -> int:
    """Rows to add so that they are ``fraction`` of all training rows: n / (n_task + n) = fraction."""
    if fraction <= 0 or n_task <= 0:
        return 0
    return max(1, round(fraction * n_task / (1 - fraction)))


def replay_rows(stream: list[int], lengths: list[int], seed: int) -> list[list[int]]:
    """Consecutive pieces of the token stream, one per length, from a seeded offset, wrapping round at the end."""
    if len(stream) < 2:
        return []
    rng = random.Random(f"{seed}:replay")
    at = rng.randrange(len(stream))
    rows = []
    for n in lengths:
        n = min(n, len(stream))
        piece = stream[at : at + n]
        if len(piece) < n:
            piece += stream[: n - len(piece)]
        rows.append(piece)
        at = (at + n) % len(stream)
    return rows


def row_lengths(task_lengths: list[int], count: int, max_length: int, seed: int) -> list[int]:
    """Each replayed row's length: a seeded draw from the task rows' lengths, at least MIN_LENGTH, at most max_length."""
    rng = random.Random(f"{seed}:replay-lengths")
    low = min(MIN_LENGTH, max_length)
    return [min(max_length, max(low, rng.choice(task_lengths))) for _ in range(count)]


def mix_replay(
    train: TokenizedData, stream: list[int], fraction: float, max_length: int, seed: int, per_example: bool
) -> tuple[TokenizedData, dict[str, Any]]:
    """The training data with replayed general-text rows appended, and what was added (for the console and report).

    The new rows carry the same keys as the task rows (a label-loss or weighted mixture collates every
    row alike): no label decision, and with ``per_example`` (data.loss_average: example) a total weight of
    one like every task row; otherwise weight one per token.
    """
    count = replay_count(len(train), fraction)
    lengths = row_lengths([len(e["input_ids"]) for e in train.examples], count, max_length, seed) if count else []
    rows = replay_rows(stream, lengths, seed)
    template = train.examples[0] if train.examples else {}
    added = [_example(ids, template, per_example) for ids in rows]
    tokens = sum(len(r) for r in rows)
    stats = {
        "rows": len(added),
        "fraction": len(added) / max(1, len(train) + len(added)),
        "tokens": tokens,
        "stream_tokens": len(stream),
        "passes": tokens / max(1, len(stream)),
    }
    mixed = TokenizedData(examples=train.examples + added, choice_sets=train.choice_sets, pad_id=train.pad_id)
    return mixed, stats


def _example(ids: list[int], template: Example, per_example: bool) -> Example:
    """A language-model row: labels are the inputs (every token after the first is a loss term)."""
    e: Example = {"input_ids": list(ids), "labels": list(ids)}
    if "choice_index" in template:
        e["choice_index"] = [-1] * len(ids)
    if "loss_weight" in template or per_example:
        w = 1.0 / max(1, len(ids) - 1) if per_example else 1.0
        e["loss_weight"] = [w] * len(ids)
    return e


def describe(stats: dict[str, Any], source: str) -> str:
    """One console line: what replay added and how often the general text is repeated."""
    passes = stats["passes"]
    again = f", the text seen {math.ceil(passes)}x" if passes > 1 else f", {100 * passes:.0f}% of the text"
    return (
        f"replay {source}: {stats['rows']} general-text rows ({100 * stats['fraction']:.1f}% of training rows, "
        f"{stats['tokens']:,} tokens{again})"
    )


def replay_documents(recipe: Any) -> tuple[list[str], str]:
    """(documents, where from) that data.replay trains on: never the documents the retention probe scores.

    corpus: pretrain replays the pretraining corpus's training split (the probe scores its held-out split);
    a text file that is also eval.retention.text gives its held-out share to the probe and the rest here.
    """
    from pathlib import Path

    from finetune.data.general_text import HELD_OUT, pretrain_documents, read_documents, split_held_out

    spec = recipe.data.replay
    if spec.corpus == "pretrain":
        return pretrain_documents(recipe.pretrain, recipe.seed)[0], "pretraining corpus (training split)"
    docs = read_documents(spec.text, "data.replay.text")
    probe = recipe.eval.retention.text if recipe.eval else None
    if probe and Path(probe).resolve() == Path(spec.text).resolve():
        return split_held_out(docs, recipe.seed, HELD_OUT)[0], f"{spec.text} (less the retention probe's share)"
    return docs, spec.text
