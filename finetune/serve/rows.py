"""Per-request decoding inside one shared batch: each row keeps its own temperature, top_p, max_tokens and stop
strings while the whole batch goes through one ``model.generate`` call (``finetune.eval.generate.generate_batch``).

transformers applies one temperature / top_p / max_new_tokens to a whole batch; its hooks do the rest:
a logits processor (``RowSampling``) shapes each row's distribution, and a stopping criterion
(``RowTracker``) ends each row on its own (transformers then pads that row) and streams its text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from transformers import LogitsProcessor, StoppingCriteria


@dataclass(frozen=True)
class RowSpec:
    """What one request asks of its row: how many tokens, how to sample, where to stop, how to show text."""

    max_tokens: int
    temperature: float = 0.0  # 0: greedy, as OpenAI's temperature 0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None  # the row's own random stream: the same seed, the same sampled answer
    strip: bool = False  # chat content is shown stripped, as `ft generate` prints it
    stream: bool = False


@dataclass(frozen=True)
class RowResult:
    text: str
    finish_reason: str  # "stop" (eos or a stop string) or "length" (max_tokens)
    completion_tokens: int


class RowSampling(LogitsProcessor):
    """Draws each sampled row's next token with its own temperature, top_p and random generator.

    The drawn token is returned as the row's only finite score, so transformers' greedy step takes it;
    greedy rows (temperature 0) pass through untouched and answer exactly as plain greedy decoding, even
    beside sampled rows. A row's own generator (seeded by the request's ``seed``) makes its draws
    independent of whatever else shares the batch.
    """

    def __init__(self, rows: Sequence[RowSpec]) -> None:
        self.rows = list(rows)
        self.generators: dict[int, torch.Generator] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        out = scores.clone()
        for i, row in enumerate(self.rows):
            if row.temperature <= 0:
                continue
            top_p = torch.tensor([row.top_p], dtype=scores.dtype, device=scores.device)
            probs = nucleus(scores[i : i + 1] / row.temperature, top_p).softmax(dim=-1)
            token = torch.multinomial(probs, 1, generator=self._generator(i, scores.device))
            out[i] = float("-inf")
            out[i, token] = 0.0
        return out

    def _generator(self, i: int, device: torch.device) -> torch.Generator:
        if i not in self.generators:
            generator = torch.Generator(device=device)
            seed = self.rows[i].seed
            if seed is None:
                generator.seed()  # fresh entropy: unseeded requests differ from each other
            else:
                generator.manual_seed(seed)
            self.generators[i] = generator
        return self.generators[i]


def nucleus(scores: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Per row, the smallest set of tokens whose probability reaches top_p (as transformers' TopPLogitsWarper)."""
    sorted_scores, order = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= (1 - top_p)[:, None]
    drop[:, -1] = False  # the most likely token always stays
    return scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))


def visible(text: str, stops: Sequence[str], final: bool, strip: bool) -> tuple[str, bool]:
    """The part of a row's text that may be shown, and whether a stop string ended it.

    Text is cut before the first stop string (OpenAI leaves the stop string out). While the row is still
    generating, a tail that may yet turn into a stop string, an unfinished character (U+FFFD from a
    partial byte sequence) or, for stripped text, trailing whitespace is held back, so what was streamed
    is always a prefix of the final text.
    """
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    stopped = bool(found)
    if stopped:
        text, final = text[: min(found)], True
    if strip:
        text = text.lstrip()
    if final:
        return (text.rstrip() if strip else text), stopped
    text = text[: len(text) - _stop_prefix(text, stops)].rstrip("\ufffd")
    return (text.rstrip() if strip else text), False


def _stop_prefix(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that is the start of a stop string."""
    return max(
        (k for s in stops for k in range(min(len(s) - 1, len(text)), 0, -1) if s.startswith(text[-k:])), default=0
    )


class RowTracker(StoppingCriteria):
    """Ends each row at eos, at its own max_tokens or stop string, or when its client left; streams its text.

    transformers calls it after every decoding step with the whole batch; rows it marks done are padded from
    then on, and the batch ends when every row is done. ``on_delta(row, text)`` receives each streaming
    row's newly visible text.
    """

    def __init__(
        self,
        rows: Sequence[RowSpec],
        tokenizer: Any,
        on_delta: Callable[[int, str], None] | None = None,
        cancelled: Callable[[int], bool] | None = None,
        stops: Sequence[int] | None = None,
    ) -> None:
        self.rows = list(rows)
        self.tokenizer = tokenizer
        self.on_delta = on_delta
        self.cancelled = cancelled or (lambda row: False)
        self.eos = set(stops) if stops else {tokenizer.eos_token_id}  # stop_ids: every id that ends an answer
        self.tokens: list[list[int]] = [[] for _ in self.rows]
        self.reasons: list[str | None] = [None] * len(self.rows)
        self.sent = [""] * len(self.rows)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        for i, token in enumerate(input_ids[:, -1].tolist()):
            if self.reasons[i] is None:
                self._step(i, token)
        return torch.tensor([r is not None for r in self.reasons], dtype=torch.bool, device=input_ids.device)

    def _step(self, i: int, token: int) -> None:
        row = self.rows[i]
        if self.cancelled(i):
            self.reasons[i] = "cancelled"
            return
        if token in self.eos:
            self.reasons[i] = "stop"
            return
        self.tokens[i].append(token)
        if row.stop or row.stream:
            shown, stopped = visible(self._text(i), row.stop, False, row.strip)
            if stopped:
                self.reasons[i] = "stop"
            elif row.stream:
                self._send(i, shown)
        if self.reasons[i] is None and len(self.tokens[i]) >= row.max_tokens:
            self.reasons[i] = "length"

    def results(self) -> list[RowResult]:
        """Each row's final text and why it ended; streaming rows get their last delta first."""
        out = []
        for i, row in enumerate(self.rows):
            shown, stopped = visible(self._text(i), row.stop, True, row.strip)
            reason = "stop" if stopped or self.reasons[i] == "stop" else "length"  # a cut-off (cancelled) row: length
            if row.stream:
                self._send(i, shown)
            out.append(RowResult(shown, reason, len(self.tokens[i])))
        return out

    def _text(self, i: int) -> str:
        return self.tokenizer.decode(self.tokens[i], skip_special_tokens=True)

    def _send(self, i: int, shown: str) -> None:
        """Send what became visible since the last send (nothing when decoding rewrote earlier text)."""
        if self.on_delta is not None and len(shown) > len(self.sent[i]) and shown.startswith(self.sent[i]):
            self.on_delta(i, shown[len(self.sent[i]) :])
            self.sent[i] = shown
