"""Render rows to text and tokens with a loss mask: one code path for training and inference.

A ``Template`` is everything needed to turn a row into a prompt (and, for
training, a response): it carries the tokenizer's chat template itself, so the
saved ``ft_template.json`` renders prompts exactly as training did without the
training process. Prompt and response are tokenized separately and
concatenated, so the boundary between masked and trained tokens is exact.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from finetune.errors import UserError

Row = dict[str, Any]
Segment = tuple[str, bool]  # (text, trained)
Example = dict[str, list[int]]
SHAPES = ("instruction", "chat", "text")
IGNORE = -100


@dataclass(frozen=True)
class Template:
    shape: str = "instruction"
    eos_token: str = ""
    chat_template: str | None = None  # Jinja, as in the tokenizer; None: our plain "### ..." layout
    special_tokens: tuple[tuple[str, str], ...] = ()  # variables the chat template may use (bos_token, ...)
    bos_prefix: str = ""  # put before plain prompts when the tokenizer would add a BOS itself
    system: str | None = None
    instruction: str | None = None
    system_in_user: bool = False  # the chat template refuses a system turn: fold it into the first user turn

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"Template.shape={self.shape!r}; use one of {', '.join(SHAPES)}")

    # ------------------------------------------------------------ construction and storage
    @classmethod
    def for_tokenizer(cls, tokenizer: Any, system: str | None, instruction: str | None, shape: str) -> "Template":
        """The template for ``tokenizer``: its chat template when it has one, else the plain layout."""
        if tokenizer.eos_token is None:
            raise UserError("the tokenizer has no eos_token, so the model could not learn to stop; set one")
        chat = tokenizer.chat_template
        if isinstance(chat, dict):
            chat = chat.get("default")
        special = tuple(sorted((k, v) for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)))
        template = cls(
            shape=shape,
            eos_token=tokenizer.eos_token,
            chat_template=chat or None,
            special_tokens=special,
            bos_prefix="" if chat else _automatic_bos(tokenizer),
            system=system or None,
            instruction=instruction or None,
        )
        if template.chat_template and template.system:
            try:
                template._render([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], True)
            except Exception:  # e.g. Gemma's template raises on a system turn
                return replace(template, system_in_user=True)
        return template

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["special_tokens"] = dict(self.special_tokens)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Template":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"ft_template.json has unknown keys {unknown}; it was written by another version of ft")
        data = dict(data)
        data["special_tokens"] = tuple(sorted(dict(data.get("special_tokens") or {}).items()))
        return cls(**data)

    # ------------------------------------------------------------ rendering
    def prompt(self, row: Row) -> str:
        """What the model sees before it answers: the training prompt, and the generation input."""
        if self.shape == "text":
            return self.bos_prefix
        if self.shape == "instruction":
            return self._instruction_prompt(row)
        turns = self._conversation(row)
        return self._render(turns[: _last_assistant(turns)], True)

    def segments(self, row: Row) -> list[Segment]:
        """The row as consecutive (text, trained) pieces; their concatenation is the full training text."""
        if self.shape == "text":
            return [(self.bos_prefix, False), (row["text"] + self.eos_token, True)]
        if self.shape == "instruction":
            return [(self._instruction_prompt(row), False), (row["output"] + self.eos_token, True)]
        return self._chat_segments(self._conversation(row))

    def _instruction_prompt(self, row: Row) -> str:
        text = row.get("input") or ""
        if self.chat_template:
            user = "\n\n".join(part for part in (self.instruction, text) if part)
            turns = [{"role": "system", "content": self.system}] if self.system else []
            return self._render(self._fold_system(turns + [{"role": "user", "content": user}]), True)
        parts = [self.system] if self.system else []
        if self.instruction:
            parts.append(f"### Instruction:\n{self.instruction}")
        if text:
            parts.append(f"### Input:\n{text}")
        parts.append("### Response:\n")
        return self.bos_prefix + "\n\n".join(parts)

    def _conversation(self, row: Row) -> list[dict[str, str]]:
        """The row's turns up to its last assistant turn, with our system text and instruction added."""
        turns = [{"role": t["role"], "content": t["content"]} for t in row["messages"]]
        turns = turns[: _last_assistant(turns) + 1]
        if self.instruction:
            for turn in turns:
                if turn["role"] == "user":
                    turn["content"] = f"{self.instruction}\n\n{turn['content']}"
                    break
        if self.system and turns[0]["role"] != "system":
            turns.insert(0, {"role": "system", "content": self.system})
        return self._fold_system(turns)

    def _fold_system(self, turns: list[dict[str, str]]) -> list[dict[str, str]]:
        if not self.system_in_user or not turns or turns[0]["role"] != "system" or len(turns) < 2:
            return turns
        first = turns[1]
        return [{"role": first["role"], "content": f"{turns[0]['content']}\n\n{first['content']}"}] + turns[2:]

    def _chat_segments(self, turns: list[dict[str, str]]) -> list[Segment]:
        """Render the conversation one assistant turn at a time: the text each turn adds is trained."""
        segments: list[Segment] = []
        done = ""
        for k, turn in enumerate(turns):
            if turn["role"] != "assistant":
                continue
            before = self._render(turns[:k], True)
            after = self._render(turns[: k + 1], False)
            if not before.startswith(done) or not after.startswith(before):
                raise UserError(
                    "this tokenizer's chat template does not render a conversation as a prefix of its longer "
                    "version, so assistant turns cannot be located; use data.shape: instruction"
                )
            segments += [(before[len(done):], False), (after[len(before):], True)]
            done = after
        return segments

    def _render(self, turns: list[dict[str, str]], add_generation_prompt: bool) -> str:
        if not self.chat_template:
            return self.bos_prefix + _plain_chat(turns, self.eos_token, add_generation_prompt)
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, _ = render_jinja_template(
            conversations=[turns],
            chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt,
            **dict(self.special_tokens),
        )
        return rendered[0]


def _plain_chat(turns: list[dict[str, str]], eos: str, add_generation_prompt: bool) -> str:
    """Chat for tokenizers without a chat template; assistant turns end with EOS so the model learns to stop."""
    text = ""
    for turn in turns:
        end = eos if turn["role"] == "assistant" else ""
        text += f"### {turn['role'].capitalize()}:\n{turn['content']}{end}\n\n"
    return text + ("### Assistant:\n" if add_generation_prompt else "")


def _last_assistant(turns: list[dict[str, str]]) -> int:
    for k in range(len(turns) - 1, -1, -1):
        if turns[k]["role"] == "assistant":
            return k
    raise UserError("a chat row has no assistant turn")


def _automatic_bos(tokenizer: Any) -> str:
    """The BOS text when the tokenizer adds one by itself (Llama-style), since we encode without special tokens."""
    bos_id = tokenizer.bos_token_id
    if bos_id is None:
        return ""
    ids = tokenizer("a")["input_ids"]
    return tokenizer.bos_token if ids and ids[0] == bos_id else ""


# ---------------------------------------------------------------- label sets


class ChoiceRegistry:
    """Label sets shared by a dataset: tuple(first-token ids of each choice) -> index into choice_sets."""

    def __init__(self, sets: list[list[int]] | None = None) -> None:
        self._index: dict[tuple[int, ...], int] = {tuple(s): i for i, s in enumerate(sets or [])}
        self._first: dict[tuple[str, ...], list[int] | None] = {}

    def index(self, first_ids: tuple[int, ...]) -> int:
        return self._index.setdefault(tuple(first_ids), len(self._index))

    @property
    def sets(self) -> list[list[int]]:
        return [list(key) for key in self._index]

    def first_tokens(self, tokenizer: Any, choices: list[str]) -> list[int] | None:
        """Each choice's first token id, or None when two choices start alike (a first token cannot decide)."""
        key = tuple(choices)
        if key not in self._first:
            ids = [tokenizer(c, add_special_tokens=False)["input_ids"][:1] for c in choices]
            firsts = [i[0] for i in ids if i]
            distinct = len(firsts) == len(choices) and len(set(firsts)) == len(firsts)
            self._first[key] = firsts if distinct else None
        return self._first[key]


# ---------------------------------------------------------------- encoding


def encode_example(
    template: Template,
    tokenizer: Any,
    row: Row,
    max_length: int,
    truncation: str,
    train_on_prompt: bool,
    choices: ChoiceRegistry | None = None,
    stats: dict[str, int] | None = None,
) -> Example | None:
    """Token ids and labels for one row (-100: not trained); None when over max_length under "drop".

    ``choices`` (label loss on) marks a classification row's first response token, where the loss
    adds a term that scores the target among the first tokens of its choices only (see
    train/loss.py); the rest of the label and eos keep the plain loss, so constrained scoring and
    free generation both work. ``stats`` counts truncated, dropped and label_loss_fallbacks.
    """
    stats = stats if stats is not None else {}
    segments = [(text, trained) for text, trained in template.segments(row) if text]
    encoded = tokenizer([text for text, _ in segments], add_special_tokens=False)["input_ids"]
    ids: list[int] = []
    trained: list[bool] = []
    start = 0  # first token of the last trained piece: the response
    for (_, is_trained), piece in zip(segments, encoded):
        if is_trained:
            start = len(ids)
        ids += piece
        trained += [is_trained] * len(piece)
    overflow = len(ids) - max_length
    if stats is not None:
        stats["longest"] = max(stats.get("longest", 0), len(ids))
    if overflow > 0:
        if truncation == "drop":
            stats["dropped"] = stats.get("dropped", 0) + 1
            return None
        cut = min(overflow, start)  # the prompt goes first, from the left
        ids, trained, start = ids[cut:], trained[cut:], start - cut
        if overflow > cut:
            ids, trained = ids[: max_length], trained[: max_length]
        stats["truncated"] = stats.get("truncated", 0) + 1
    labels = [tok if (is_trained or train_on_prompt) else IGNORE for tok, is_trained in zip(ids, trained)]
    example: Example = {"input_ids": ids, "labels": labels}
    if choices is not None and row.get("choices") and template.shape != "text":
        index = _choice_index(choices, tokenizer, row, ids, start)
        if index is None:
            stats["label_loss_fallbacks"] = stats.get("label_loss_fallbacks", 0) + 1
        else:
            example["choice_index"] = [-1] * len(ids)
            example["choice_index"][start] = index
    return example


def _choice_index(registry: ChoiceRegistry, tokenizer: Any, row: Row, ids: list[int], start: int) -> int | None:
    """The row's label-set index, or None when the first response token cannot carry the decision."""
    firsts = registry.first_tokens(tokenizer, list(row["choices"]))
    output = row.get("output")
    if firsts is None or output not in row["choices"] or start >= len(ids):
        return None
    if ids[start] != firsts[row["choices"].index(output)]:
        return None
    return registry.index(tuple(firsts))
