"""Property tests at the edges (RELIABILITY.md properties 6 and 9): whatever users feed in, only user errors come out.

Recipes (YAML text, nested dicts, dotted overrides) may give a Recipe or a
RecipeError, nothing else; rows and scenario files may give rows or a UserError.
Anything else would reach the user as a traceback instead of a one-line fix.
The loader escapes these found (non-UTF-8 files, self-referencing aliases, deep
nesting, overrides through plain values) are pinned as regression cases at the end.
"""

from __future__ import annotations

import csv
import io
import json
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from finetune import scenarios
from finetune.config import Recipe, RecipeError, load_recipe, recipe_from_dict
from finetune.config.schema import DataSpec
from finetune.data.sources import check_rows, row_problem
from finetune.errors import UserError

# derandomized: the suite sees the same 200 examples per property on every run, so CI never flakes on a new one
PROPERTY = settings(
    max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _field_names(model: type[BaseModel], seen: set[type] | None = None) -> set[str]:
    """Every key name anywhere in the recipe schema, so random dicts reach nested validators."""
    seen = seen if seen is not None else set()
    seen.add(model)
    names = set(model.model_fields)
    for field in model.model_fields.values():
        for arg in _annotation_types(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel) and arg not in seen:
                names |= _field_names(arg, seen)
    return names


def _annotation_types(annotation: Any) -> list[Any]:
    out = [annotation]
    for arg in typing.get_args(annotation):
        out += _annotation_types(arg)
    return out


KEYS = sorted(_field_names(Recipe))
WORDS = [
    "lora",
    "full",
    "dora",
    "file",
    "generated",
    "hf",
    "cosine",
    "auto",
    "risk_assessment",
    "tutoring",
    "instruction",
    "chat",
    "text",
    "skip",
    "error",
    "fp32",
    "rope",
    "swiglu",
    "m",
    "-1",
    "1e-4",
    "",
    "~",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(WORDS)
)
keys = st.sampled_from(KEYS) | st.text(max_size=8)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5), max_leaves=25
)

FINETUNE = {
    "name": "p",
    "seed": 0,
    "model": {"path": "models/base"},
    "data": {"sources": [{"scenario": "risk_assessment", "sizes": {"train": 8}}], "max_length": 64},
    "method": {"kind": "lora", "r": 4},
    "train": {"max_steps": 3, "betas": [0.9, 0.95]},
    "eval": {"samples": 4},
}
PRETRAIN = {
    "name": "p",
    "model": {"core": {"layers": 2, "width": 32, "heads": 4}},
    "pretrain": {"corpus": {"kind": "file", "path": "c.txt"}, "train": {"max_steps": 2}},
}


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a nested dict/list, as a tuple of keys and indexes."""
    out = [prefix] if prefix else []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, prefix + (i,))
    return out


def _recipe_or_recipe_error(call) -> None:
    try:
        assert isinstance(call(), Recipe)
    except RecipeError as exc:
        assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("properties")


# ---------------------------------------------------------------- recipes


@PROPERTY
@given(st.text(max_size=300) | values.map(lambda v: yaml.safe_dump(v, allow_unicode=True)))
def test_any_yaml_text_gives_a_recipe_or_a_recipe_error(scratch, text):
    path = scratch / "recipe.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return  # lone surrogates: a non-UTF-8 file, pinned separately below
    _recipe_or_recipe_error(lambda: load_recipe(path))


@PROPERTY
@given(st.dictionaries(keys, values, max_size=8))
def test_any_nested_dict_gives_a_recipe_or_a_recipe_error(data):
    _recipe_or_recipe_error(lambda: recipe_from_dict(data))


@PROPERTY
@given(st.sampled_from([FINETUNE, PRETRAIN]), st.data())
def test_a_valid_recipe_with_random_edits_gives_a_recipe_or_a_recipe_error(base, data):
    """Edits deep inside a valid recipe reach the validators a random dict never gets to."""
    tree = json.loads(json.dumps(base))
    for path in data.draw(st.lists(st.sampled_from(_paths(tree)), min_size=1, max_size=3)):
        node = tree
        try:
            for part in path[:-1]:
                node = node[part]
            if data.draw(st.booleans()) and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = data.draw(values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced this place
    _recipe_or_recipe_error(lambda: recipe_from_dict(tree))


override_keys = st.lists(st.sampled_from(KEYS) | st.sampled_from(["data.sources.0", "0"]), min_size=1, max_size=3)


@PROPERTY
@given(override_keys, st.text(max_size=20) | st.sampled_from(WORDS))
def test_any_dotted_override_gives_a_recipe_or_a_recipe_error(path, value):
    """One override at a time: a second one descending through a scalar the first wrote is a pinned bug below."""
    _recipe_or_recipe_error(lambda: recipe_from_dict(FINETUNE, [".".join(path) + "=" + value]))


# ---------------------------------------------------------------- rows

ROW_KEYS = ["input", "output", "messages", "text", "label", "choices", "role", "content", "group", "id"]
row_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(ROW_KEYS) | st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
text = st.text(max_size=15)
turn = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]), "content": text})


@st.composite
def good_row(draw) -> dict[str, Any]:
    """A row that fits one of the three shapes (not necessarily the one under test)."""
    kind = draw(st.sampled_from(["instruction", "classification", "chat", "text"]))
    if kind == "chat":
        return {"messages": draw(st.lists(turn, min_size=1, max_size=3))}
    if kind == "text":
        return {"text": draw(text)}
    row = {"input": draw(text), "output": draw(text)}
    if kind == "classification":
        row["choices"] = draw(st.lists(text, max_size=2)) + [row["output"]]
    return row


@st.composite
def bad_row(draw) -> dict[str, Any]:
    """A good row with one field replaced by a random value, dropped, or a random key added."""
    row = draw(good_row())
    key = draw(st.sampled_from(sorted(row)) | st.sampled_from(ROW_KEYS))
    if draw(st.booleans()):
        row.pop(key, None)
    else:
        row[key] = draw(
            row_values | st.lists(st.dictionaries(st.sampled_from(["role", "content"]), row_values), max_size=2)
        )
    return row


rows = st.lists(
    good_row() | bad_row() | st.dictionaries(st.sampled_from(ROW_KEYS) | st.text(max_size=5), row_values, max_size=4),
    max_size=6,
)


@PROPERTY
@given(rows, st.sampled_from(["instruction", "chat", "text"]), st.sampled_from(["error", "skip"]))
def test_any_rows_are_kept_skipped_and_counted_or_a_user_error(batch, shape, on_bad_row):
    spec = DataSpec(shape=shape, on_bad_row=on_bad_row)
    for row in batch:
        problem = row_problem(row, shape)
        assert problem is None or (isinstance(problem, str) and problem)
    try:
        kept, skipped = check_rows(batch, spec, "rows.jsonl")
    except UserError as exc:
        assert on_bad_row == "error" and "rows.jsonl, row " in str(exc)
        return
    assert len(kept) + skipped == len(batch), "a row vanished without being counted"
    assert all(row_problem(row, shape) is None for row in kept)


# ---------------------------------------------------------------- scenario files
# Each format gets files that are valid about half the time ("clean") and otherwise carry
# wrong cells, missing or extra columns, ragged rows and broken lines, so the readers'
# row checks are reached, not just their header checks.

cells = st.text(max_size=12) | st.sampled_from(["", " ", "good", "bad", "1", "0", "2", "#### 42", "A11", "nan", "@"])
words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20)
numbers = st.integers(-5, 10**6).map(str) | st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: f"{v:g}")


def _e2e_mr(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f"{k}[{v}]" for k, v in pairs)


mr = st.lists(
    st.tuples(
        st.sampled_from(["name", "food", "area", "priceRange"]), st.from_regex(r"[A-Za-z ]{1,10}", fullmatch=True)
    ),
    min_size=1,
    max_size=3,
).map(lambda pairs: _e2e_mr([("name", "The Eagle"), *pairs]))
answer = (
    st.integers(-100, 10**6).map(lambda n: f"so the total is {n}\n#### {n}")
    | st.sampled_from(["positive", "Neutral"])
    | numbers
)
CSV_COLUMNS = {
    "e2e": {"mr": mr, "ref": words},
    "tfns": {"text": words, "label": st.sampled_from(["0", "1", "2"])},
    "mts_dialog": {"ID": numbers, "section_header": words, "section_text": words, "dialogue": words},
    "aci_bench": {"dialogue": words.map(lambda w: f"[doctor] {w} [patient] ok"), "note": words},
    "csv": {"label": st.sampled_from(["good", "bad", "1", "0", "yes", "No"]), "age": numbers, "income": words},
}
JSONL_KEYS = {
    "gsm8k": {"question": words, "answer": answer},
    "qa_jsonl": {"question": words, "answer": answer, "context": words},
}
_mcq = {"question": words, **{f"op{k}": words for k in "abcd"}, "cop": st.integers(-1, 5)}
JSONL_KEYS.update(
    medqa_jsonl={
        "question": words,
        "options": st.fixed_dictionaries({k: words for k in "ABCD"}) | values,
        "answer_idx": st.sampled_from(["A", "D", "E", "1"]),
        "answer": words,
    },
    medmcqa=_mcq,
    medmcqa_hf=_mcq,
)
_note = st.fixed_dictionaries(
    {
        "choice": st.sampled_from(["Entailment", "NotMentioned", "Maybe"]),
        "spans": st.lists(st.integers(-1, 3), max_size=2),
    }
)
contractnli_file = (
    st.fixed_dictionaries(
        {
            "documents": st.lists(
                st.fixed_dictionaries(
                    {
                        "text": words,
                        "spans": st.lists(st.lists(st.integers(-1, 25), min_size=2, max_size=2), max_size=3),
                        "annotation_sets": st.lists(
                            st.fixed_dictionaries(
                                {"annotations": st.dictionaries(st.sampled_from(["nda-1", "nda-9"]), _note)}
                            ),
                            max_size=1,
                        ),
                    }
                ),
                max_size=2,
            ),
            "labels": st.just({"nda-1": {"hypothesis": "Receiving Party shall keep secrets."}}),
        }
    )
    | values
).map(json.dumps)


_abcd_turn = st.tuples(st.sampled_from(["agent", "customer", "action", "bot"]), words | cells).map(list)
abcd_file = (
    st.lists(
        st.fixed_dictionaries(
            {
                "convo_id": st.integers(0, 99),
                "original": st.lists(_abcd_turn, max_size=4) | values,
                "scenario": st.fixed_dictionaries({"flow": words, "subflow": words}),
            }
        )
        | values,
        max_size=3,
    )
    | st.fixed_dictionaries(
        {"train": st.lists(st.fixed_dictionaries({"original": st.lists(_abcd_turn, max_size=3)}), max_size=2)}
    )
).map(json.dumps)
CSV_COLUMNS.update(
    banking77={"text": words, "category": st.sampled_from(["card_arrival", "Refund_not_showing_up", "nope", ""])},
    bitext={"instruction": words, "response": words, "intent": words, "category": words},
)


@st.composite
def csv_file(draw, columns: dict[str, Any]) -> str:
    clean = draw(st.booleans())
    header = list(columns) + draw(
        st.lists(st.sampled_from(["x", "group", "dataset", "encounter_id"]), unique=True, max_size=2)
    )
    if not clean:
        header = draw(st.permutations(header))[: draw(st.integers(1, len(header)))]
    body = []
    for _ in range(draw(st.integers(0 if not clean else 1, 4))):
        row = [draw(columns.get(c, words) if clean else columns.get(c, words) | cells) for c in header]
        if not clean and draw(st.booleans()):
            row = row[:-1] if draw(st.booleans()) else row + ["extra"]
        body.append(row)
    out = io.StringIO()
    csv.writer(out).writerows([header, *body])
    return out.getvalue()


@st.composite
def jsonl_file(draw, keys: dict[str, Any]) -> str:
    clean = draw(st.booleans())
    lines = []
    for _ in range(draw(st.integers(0 if not clean else 1, 4))):
        obj = {k: draw(v if clean else v | values) for k, v in keys.items() if clean or draw(st.booleans())}
        lines.append(json.dumps(obj if clean or draw(st.booleans()) else draw(values)))
    tail = "" if clean else draw(st.sampled_from(["", "\n", "\n{broken", "\n\n", "\n[1]"]))
    return "\n".join(lines) + tail


def _german_tokens() -> list[Any]:
    from finetune.scenarios.risk_assessment import GERMAN_ATTRIBUTES

    return [st.sampled_from(sorted(codes)) if codes else numbers for _, codes, _ in GERMAN_ATTRIBUTES] + [
        st.sampled_from(["1", "2"])
    ]


@st.composite
def whitespace_file(draw, tokens: list[Any]) -> str:
    clean = draw(st.booleans())
    lines = []
    for _ in range(draw(st.integers(0 if not clean else 1, 3))):
        line = [draw(t if clean else t | cells.filter(lambda c: c.split() == [c])) for t in tokens]
        if not clean and draw(st.booleans()):
            line = line[: draw(st.integers(0, len(line)))]
        lines.append(" ".join(line))
    return "\n".join(lines)


phrasebank_file = st.lists(
    st.tuples(words | cells, st.sampled_from(["positive", "negative", "neutral", "Bullish", ""])), max_size=4
).map(lambda pairs: "\n".join(f"{t}@{label}" for t, label in pairs))
FILES = {
    **{fmt: (csv_file(cols), ".csv") for fmt, cols in CSV_COLUMNS.items()},
    **{fmt: (jsonl_file(keys), ".jsonl") for fmt, keys in JSONL_KEYS.items()},
    "german_credit": (whitespace_file(_german_tokens()), ".data"),
    "australian_credit": (whitespace_file([numbers] * 14 + [st.sampled_from(["0", "1"])]), ".dat"),
    "financial_phrasebank": (phrasebank_file, ".txt"),
    "abcd": (abcd_file, ".json"),
    **{
        fmt: (contractnli_file, ".json")
        for fmt in ("contractnli", "contractnli_top2", "contractnli_top8", "contractnli_full")
    },
}


@pytest.mark.parametrize("name", scenarios.NAMES)
def test_any_file_content_gives_rows_or_a_user_error(scratch, name):
    scenario = scenarios.get(name)
    formats = list(scenario.formats)

    @PROPERTY
    @given(st.sampled_from(formats), st.booleans(), st.booleans(), st.data())
    def check(fmt: str, named: bool, right_suffix: bool, data: st.DataObject) -> None:
        content, suffix = FILES[fmt]
        text = data.draw(content | st.text(max_size=120))
        if not right_suffix:
            suffix = data.draw(st.sampled_from([".csv", ".jsonl", ".txt", ".json"]))
        path = scratch / f"data{suffix}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            got = scenario.read(path, fmt if named else None)
        except UserError as exc:
            assert path.name in str(exc)
            return
        assert got and all(isinstance(row, dict) and isinstance(row.get("input"), str) for row in got)

    assert set(formats) <= set(FILES), f"a new format of {name} needs a file generator here"
    check()


# ---------------------------------------------------------------- loader escapes found by the properties above, now fixed


@pytest.mark.parametrize(
    "case", ["not-utf8", "self-referencing-alias", "deep-nesting", "override-through-scalar", "override-after-override"]
)
def test_known_loader_escapes(scratch, case):
    path = scratch / f"{case}.yaml"
    texts = {
        "not-utf8": b"\xff\xfename: x\n",
        "self-referencing-alias": b"name: &x [*x]\nmodel: {path: m}\n",
        "deep-nesting": b"name: " + b"[" * 3000 + b"]" * 3000 + b"\n",
    }
    overrides = {
        "override-through-scalar": ["train.betas.0.x=1"],
        "override-after-override": ["data.sources.0=a", "data.sources.0.path=b"],
    }
    if case in overrides:
        with pytest.raises(RecipeError):
            recipe_from_dict(FINETUNE, overrides[case])
        return
    path.write_bytes(texts[case])
    with pytest.raises(RecipeError):
        load_recipe(path)


# ---------------------------------------------------------------- special-token strings in data (issue 12, point 3)
# Whatever a row's text spells, encoding it yields the special ids of the template only: the same ones
# as for the row with every special-token string replaced by "x", and one trained stop per answer.

SPECIAL_CORPUS = ["hello world good morning, the end of the day is near"] * 20


@pytest.fixture(scope="module")
def special_tokenizers(tmp_path_factory) -> dict[str, Any]:
    import copy

    from finetune.model.tokenizer import train_tokenizer

    chat = train_tokenizer(SPECIAL_CORPUS, 300, tmp_path_factory.mktemp("special-tok"))
    plain = copy.deepcopy(chat)
    plain.chat_template = None
    return {"chat template": chat, "plain layout": plain}


SPECIAL_STRINGS = ["<|eos|>", "<|pad|>", "<|bos|>", "<|user|>", "<|assistant|>", "<|system|>"]
data_text = st.lists(
    st.sampled_from(SPECIAL_STRINGS + ["<|", "|>", "eos", " ", "\n", "hello", "### Response:\n"])
    | st.text(alphabet="<|>eos \nab", max_size=6),
    max_size=8,
).map("".join)
special_text = st.tuples(data_text, st.sampled_from(SPECIAL_STRINGS), data_text).map("".join)  # at least one


@st.composite
def special_row(draw) -> tuple[str, dict[str, Any]]:
    """(shape, row): an instruction or chat row whose texts hold special-token strings."""
    if draw(st.booleans()):
        return "instruction", {"input": draw(data_text | special_text), "output": draw(special_text)}
    n = draw(st.integers(1, 3))
    messages = []
    for _ in range(n):
        messages += [
            {"role": "user", "content": draw(data_text | special_text)},
            {"role": "assistant", "content": draw(special_text)},
        ]
    return "chat", {"messages": messages}


def _spelled_x(value: Any) -> Any:
    if isinstance(value, str):
        for s in SPECIAL_STRINGS:
            value = value.replace(s, "x")
        return value
    if isinstance(value, list):
        return [_spelled_x(v) for v in value]
    if isinstance(value, dict):
        return {k: _spelled_x(v) for k, v in value.items()}
    return value


@PROPERTY
@given(
    special_row(),
    st.sampled_from(["chat template", "plain layout"]),
    st.none() | special_text,
    st.none() | special_text,
)
def test_special_token_strings_in_rows_never_become_special_ids(special_tokenizers, case, which, system, instruction):
    from finetune.data.format import Template, encode_example

    shape, row = case
    tokenizer = special_tokenizers[which]
    template = Template.for_tokenizer(tokenizer, system, instruction, shape)
    special = set(tokenizer.all_special_ids)

    def specials(r: dict[str, Any]) -> tuple[list[int], list[int]]:
        example = encode_example(template, tokenizer, r, 4096, "truncate", False)
        return ([i for i in example["input_ids"] if i in special], [i for i in example["labels"] if i in special])

    got_ids, got_labels = specials(row)
    want_ids, want_labels = specials(_spelled_x(row))
    assert got_ids == want_ids and got_labels == want_labels
    answers = len(row["messages"]) // 2 if shape == "chat" else 1
    assert got_labels == [tokenizer.eos_token_id] * answers
