"""Render rows to text and tokens with a loss mask: one code path for training and inference.

A ``Template`` is everything needed to turn a row into a prompt (and, for
training, a response): it carries the tokenizer's chat template itself, so the
saved ``ft_template.json`` renders prompts exactly as training did without the
training process. Prompt and response are tokenized separately and
concatenated, so the boundary between masked and trained tokens is exact.

Text from data (inputs, outputs, message contents, the recipe's system and
instruction text) is always encoded as plain text: a row that spells out
``<|eos|>`` or ``<|user|>`` gets the characters, never the special ids, so data
cannot fake chat turns or train early stops. Only the template's own text adds
special tokens. Rendering therefore keeps every string as pieces that remember
where they came from (``Piece``), and ``encode_pieces`` is the one encoder.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from typing import Any

from finetune.errors import UserError

Row = dict[str, Any]
Segment = tuple[str, bool]  # (text, trained)
Piece = tuple[str, bool]  # (text, plain): plain text came from data and is never read as special tokens
Part = tuple[list[Piece], bool]  # (pieces, trained)
Example = dict[str, list[int]]
SHAPES = ("instruction", "chat", "text")
IGNORE = -100
TEMPLATE_FILE = "ft_template.json"  # a trained model's templates, beside its weights (methods.load_for_eval reads it)


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
                template._render_text([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], True)
            except Exception:  # e.g. Gemma's template raises on a system turn
                return replace(template, system_in_user=True)
        return template

    @classmethod
    def for_generation(cls, tokenizer: Any, saved: dict[str, Any] | None, source: str | None = None) -> "Template":
        """The template ``ft generate`` and ``ft serve`` prompt a model with, so both render a prompt alike.

        ``saved`` is the model folder's TEMPLATE_FILE (methods.saved_templates): a model ft trained is prompted as
        training rendered ``source`` (default: the run's default source); any other model gets ``for_tokenizer``:
        its chat template when it has one, else the plain layout.
        """
        if not saved:
            return cls.for_tokenizer(tokenizer, None, None, "instruction")
        data = saved["sources"].get(source) if source else saved["default"]
        if data is None:
            raise UserError(f"--source {source!r} has no saved template; saved: {', '.join(saved['sources'])}")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["special_tokens"] = dict(self.special_tokens)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Template":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{TEMPLATE_FILE} has unknown keys {unknown}; it was written by another version of ft")
        data = dict(data)
        data["special_tokens"] = tuple(sorted(dict(data.get("special_tokens") or {}).items()))
        return cls(**data)

    # ------------------------------------------------------------ rendering
    def prompt(self, row: Row) -> "Prompt":
        """What the model sees before it answers: the training prompt, and the generation input."""
        return Prompt(self.prompt_pieces(row))

    def prompt_pieces(self, row: Row) -> list[Piece]:
        if self.shape == "text":
            return [(self.bos_prefix, False)]
        if self.shape == "instruction":
            return self._instruction_prompt(row)
        turns = self._conversation(row)
        return self._render(turns[: _last_assistant(turns)], True)

    def segments(self, row: Row) -> list[Segment]:
        """The row as consecutive (text, trained) pieces; their concatenation is the full training text."""
        return [(_join(pieces), trained) for pieces, trained in self.parts(row)]

    def parts(self, row: Row) -> list[Part]:
        """The row as consecutive (pieces, trained) parts: ``segments`` with data text marked plain."""
        if self.shape == "text":
            return [([(self.bos_prefix, False)], False), ([(row["text"], True), (self.eos_token, False)], True)]
        if self.shape == "instruction":
            return [(self._instruction_prompt(row), False), ([(row["output"], True), (self.eos_token, False)], True)]
        return self._chat_parts(self._conversation(row))

    def _instruction_prompt(self, row: Row) -> list[Piece]:
        text = row.get("input") or ""
        if self.chat_template:
            user = "\n\n".join(part for part in (self.instruction, text) if part)
            turns = [{"role": "system", "content": self.system}] if self.system else []
            return self._render(self._fold_system(turns + [{"role": "user", "content": user}]), True)
        sections: list[list[Piece]] = [[(self.system, True)]] if self.system else []
        if self.instruction:
            sections.append([("### Instruction:\n", False), (self.instruction, True)])
        if text:
            sections.append([("### Input:\n", False), (text, True)])
        sections.append([("### Response:\n", False)])
        pieces: list[Piece] = [(self.bos_prefix, False)]
        for k, section in enumerate(sections):
            pieces += ([("\n\n", False)] if k else []) + section
        return pieces

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

    def _chat_parts(self, turns: list[dict[str, str]]) -> list[Part]:
        """Render the conversation one assistant turn at a time: the text each turn adds is trained."""
        parts: list[Part] = []
        done = ""
        for k, turn in enumerate(turns):
            if turn["role"] != "assistant":
                continue
            before_pieces, after_pieces = self._render(turns[:k], True), self._render(turns[: k + 1], False)
            before, after = _join(before_pieces), _join(after_pieces)
            if not before.startswith(done) or not after.startswith(before):
                raise UserError(
                    "this tokenizer's chat template does not render a conversation as a prefix of its longer "
                    "version, so assistant turns cannot be located; use data.shape: instruction"
                )
            parts += [
                (_cut(before_pieces, len(done), len(before)), False),
                (_cut(after_pieces, len(before), len(after)), True),
            ]
            done = after
        return parts

    def _render(self, turns: list[dict[str, str]], add_generation_prompt: bool) -> list[Piece]:
        """The conversation as the template renders it, each message's text marked plain."""
        if not self.chat_template:
            return [(self.bos_prefix, False)] + _plain_chat(turns, self.eos_token, add_generation_prompt)
        rendered = self._render_text(turns, add_generation_prompt)
        layout = _layout(self, tuple(turn["role"] for turn in turns), add_generation_prompt)
        contents = [turn["content"] for turn in turns]
        found = _locate(rendered, layout, contents)
        if found is not None:
            return found
        # The template rewrites message text beyond whitespace (rare): keep its layout, the text as given.
        return [(text, False) if k % 2 == 0 else (contents[int(text)], True) for k, text in enumerate(layout)]

    def _render_text(self, turns: list[dict[str, str]], add_generation_prompt: bool) -> str:
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, _ = render_jinja_template(
            conversations=[turns],
            chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt,
            **dict(self.special_tokens),
        )
        return rendered[0]


@lru_cache(maxsize=256)
def _layout(template: Template, roles: tuple[str, ...], add_generation_prompt: bool) -> tuple[str, ...]:
    """The template's output with message k's text replaced by a placeholder, split into
    [text, "k", text, ...]; it depends on the roles only, so it is rendered once per conversation shape."""
    marked = [{"role": role, "content": f"{_MARK_OPEN}{k}{_MARK_CLOSE}"} for k, role in enumerate(roles)]
    return tuple(_MARKS.split(template._render_text(marked, add_generation_prompt)))


class Prompt(str):
    """A rendered prompt that still knows which of its characters came from data.

    It is the plain string everywhere a string is expected; ``encode_text`` reads its pieces,
    so a prompt passed to generation or label scoring is encoded exactly as in training.
    A string built from it (``prompt + "x"``) is an ordinary ``str`` and loses that knowledge.
    """

    pieces: tuple[Piece, ...]

    def __new__(cls, pieces: list[Piece]) -> "Prompt":
        prompt = super().__new__(cls, _join(pieces))
        prompt.pieces = tuple(pieces)
        return prompt

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and deepcopy rebuild it from its pieces
        return Prompt, (list(self.pieces),)


# Placeholders for message text while locating it in a chat template's output (private-use characters).
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_MARKS = re.compile(f"{_MARK_OPEN}(\\d+){_MARK_CLOSE}")


def _join(pieces: list[Piece] | tuple[Piece, ...]) -> str:
    return "".join(text for text, _ in pieces)


def _cut(pieces: list[Piece], start: int, end: int) -> list[Piece]:
    """The characters [start, end) of the pieces' text, still as pieces."""
    out: list[Piece] = []
    at = 0
    for text, plain in pieces:
        lo, hi = max(start - at, 0), min(end - at, len(text))
        if lo < hi:
            out.append((text[lo:hi], plain))
        at += len(text)
    return out


def _locate(rendered: str, layout: tuple[str, ...], contents: list[str]) -> list[Piece] | None:
    """Split ``rendered`` into template text and message text, given the template's output with each
    message replaced by a placeholder (``layout``: text, index, text, ..., text).

    Templates may trim message text (Llama 3, Gemma), so each message may appear stripped; None when
    the rendering cannot be explained this way.
    """

    def walk(i: int, at: int) -> list[Piece] | None:
        text = layout[i]
        if not rendered.startswith(text, at):
            return None
        at += len(text)
        if i == len(layout) - 1:
            return [(text, False)] if at == len(rendered) else None
        content = contents[int(layout[i + 1])]
        for variant in dict.fromkeys((content, content.strip(), content.lstrip(), content.rstrip())):
            rest = walk(i + 2, at + len(variant)) if rendered.startswith(variant, at) else None
            if rest is not None:
                return [(text, False), (variant, True)] + rest
        return None

    return walk(0, 0)


def _plain_chat(turns: list[dict[str, str]], eos: str, add_generation_prompt: bool) -> list[Piece]:
    """Chat for tokenizers without a chat template; assistant turns end with EOS so the model learns to stop."""
    pieces: list[Piece] = []
    for turn in turns:
        end = eos if turn["role"] == "assistant" else ""
        pieces += [(f"### {turn['role'].capitalize()}:\n", False), (turn["content"], True), (f"{end}\n\n", False)]
    return pieces + ([("### Assistant:\n", False)] if add_generation_prompt else [])


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
            ids = [encode_plain(tokenizer, c)[:1] for c in choices]
            firsts = [i[0] for i in ids if i]
            distinct = len(firsts) == len(choices) and len(set(firsts)) == len(firsts)
            self._first[key] = firsts if distinct else None
        return self._first[key]


# ---------------------------------------------------------------- encoding


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Ids of a prompt: a ``Prompt`` by its pieces (data text plain); any other string as the tokenizer reads it."""
    if isinstance(text, Prompt):
        return encode_pieces(tokenizer, text.pieces)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_plain(tokenizer: Any, text: str) -> list[int]:
    """Ids of data text (a label, a reply) on its own: never special tokens."""
    return encode_pieces(tokenizer, [(text, True)])


def encode_pieces(tokenizer: Any, pieces: list[Piece] | tuple[Piece, ...]) -> list[int]:
    """Ids of the pieces' text where only the template's own special-token strings become special ids.

    A text without special-token strings in its data pieces (nearly all) is encoded in one call,
    exactly as before this distinction existed. Otherwise the text is cut at the template's
    special tokens and each run between them is encoded with ``split_special_tokens``; a
    tokenizer that marks word starts (SentencePiece's "▁") may then start such a run with one.
    """
    return encode_many(tokenizer, [pieces])[0]


def encode_many(tokenizer: Any, texts: list[list[Piece]] | list[tuple[Piece, ...]]) -> list[list[int]]:
    """``encode_pieces`` for several texts, the ordinary ones in one tokenizer call."""
    pattern = _special_pattern(tokenizer)
    out: list[list[int]] = [[] for _ in texts]
    ordinary = []
    for k, pieces in enumerate(texts):
        text = _join(pieces)
        if pattern is None or all(_in_template(pieces, m.start(), m.end()) for m in pattern.finditer(text)):
            if text:
                ordinary.append(k)
            continue
        for run, special in _runs(pieces, pattern):
            if special:
                out[k].append(tokenizer.convert_tokens_to_ids(run))
            elif run:
                out[k] += tokenizer(run, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    if ordinary:
        encoded = tokenizer([_join(texts[k]) for k in ordinary], add_special_tokens=False)["input_ids"]
        for k, ids in zip(ordinary, encoded):
            out[k] = ids
    return out


def _in_template(pieces: list[Piece] | tuple[Piece, ...], start: int, end: int) -> bool:
    """Whether the characters [start, end) lie inside one piece of template text."""
    at = 0
    for text, plain in pieces:
        if at <= start and end <= at + len(text):
            return not plain
        at += len(text)
    return False  # spans a boundary between pieces: not the template's own token


def _runs(pieces: list[Piece] | tuple[Piece, ...], pattern: re.Pattern[str]) -> list[tuple[str, bool]]:
    """(text, is_special) runs: the template's special-token strings apart, all other text merged."""
    runs: list[tuple[str, bool]] = []
    plain = ""
    for text, is_data in pieces:
        if is_data:
            plain += text
            continue
        at = 0
        for match in pattern.finditer(text):
            runs += [(plain + text[at : match.start()], False), (match.group(), True)]
            plain, at = "", match.end()
        plain += text[at:]
    return runs + [(plain, False)]


_PATTERNS: "weakref.WeakKeyDictionary[Any, tuple[int, re.Pattern[str] | None]]" = weakref.WeakKeyDictionary()


def _special_pattern(tokenizer: Any) -> re.Pattern[str] | None:
    """A regex for the tokenizer's special-token strings (longest first), cached per tokenizer and size."""
    size = len(tokenizer)
    try:
        cached = _PATTERNS.get(tokenizer)
    except TypeError:  # not weak-referenceable: compute each time
        cached = None
    if cached is not None and cached[0] == size:
        return cached[1]
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    strings = {t.content for t in added.values() if getattr(t, "special", False)}
    strings |= {t for t in tokenizer.all_special_tokens if t}
    pattern = re.compile("|".join(map(re.escape, sorted(strings, key=len, reverse=True)))) if strings else None
    try:
        _PATTERNS[tokenizer] = (size, pattern)
    except TypeError:
        pass
    return pattern


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
    return encode_examples(template, tokenizer, [row], max_length, truncation, train_on_prompt, choices, stats)[0]


def encode_examples(
    template: Template,
    tokenizer: Any,
    rows: list[Row],
    max_length: int,
    truncation: str,
    train_on_prompt: bool,
    choices: ChoiceRegistry | None = None,
    stats: dict[str, int] | None = None,
    chunk: int = 1024,
) -> list[Example | None]:
    """``encode_example`` for each row, the texts of ``chunk`` rows encoded in one tokenizer call.

    One call per row spent most of a 16k-row tokenization starting the tokenizer's batch (0.35 ms a call, 14 s for the
    quickstart's rows on 2 cores); the ids are the same (tests/test_data_format.py).
    """
    options = (max_length, truncation, train_on_prompt, choices, stats)
    out: list[Example | None] = []
    for at in range(0, len(rows), chunk):
        part_rows = rows[at : at + chunk]
        parts = [[(pieces, on) for pieces, on in template.parts(row) if _join(pieces)] for row in part_rows]
        encoded = iter(encode_many(tokenizer, [pieces for row_parts in parts for pieces, _ in row_parts]))
        for row, row_parts in zip(part_rows, parts):
            ids = [next(encoded) for _ in row_parts]
            out.append(_assemble(template, tokenizer, row, row_parts, ids, *options))
    return out


def _assemble(
    template: Template,
    tokenizer: Any,
    row: Row,
    parts: list[tuple[list[Piece], bool]],
    encoded: list[list[int]],
    max_length: int,
    truncation: str,
    train_on_prompt: bool,
    choices: ChoiceRegistry | None,
    stats: dict[str, int] | None,
) -> Example | None:
    """One row's example from its parts' ids: labels, truncation, the label-set index."""
    stats = stats if stats is not None else {}
    ids: list[int] = []
    trained: list[bool] = []
    start = 0  # first token of the last trained piece: the response
    for (_, is_trained), piece in zip(parts, encoded):
        if is_trained:
            start = len(ids)
        ids += piece
        trained += [is_trained] * len(piece)
    overflow = len(ids) - max_length
    stats["longest"] = max(stats.get("longest", 0), len(ids))
    if overflow > 0:
        if truncation == "drop":
            stats["dropped"] = stats.get("dropped", 0) + 1
            return None
        cut = min(overflow, start)  # the prompt goes first, from the left
        ids, trained, start = ids[cut:], trained[cut:], start - cut
        if overflow > cut:
            ids, trained = ids[:max_length], trained[:max_length]
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
