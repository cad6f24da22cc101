"""Customer support scenario: generator invariants, BANKING77/Bitext/ABCD readers, evaluator, chat loss mask."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from finetune.config.schema import DataSpec
from finetune.data.sources import check_rows
from finetune.scenarios import ScenarioDataError, get
from finetune.scenarios import customer_support as cs

SMALL = {"train": 300, "validation": 40, "test": 60}


def test_registry_finds_scenario():
    scenario = get("customer_support")
    assert scenario.name == "customer_support" and scenario.task == "mixed"
    assert set(scenario.formats) == {"banking77", "bitext", "abcd"}
    assert len(cs.LABELS) == len(set(cs.LABELS)) == 77


@pytest.mark.parametrize("task", ["intents", "chat", "both"])
def test_deterministic_and_disjoint(task):
    splits = cs.generate(seed=3, sizes=SMALL, task=task)
    assert splits == cs.generate(seed=3, sizes=SMALL, task=task)
    assert splits != cs.generate(seed=4, sizes=SMALL, task=task)
    inputs = [{r["input"] for r in rows} for rows in splits.values()]
    assert sum(len(s) for s in inputs) == len(set().union(*inputs)) == sum(SMALL.values())
    kinds = Counter(r["subtask"] for r in splits["train"])
    assert set(kinds) == {"intents": {"intent"}, "chat": {"reply"}, "both": {"intent", "reply"}}[task]


def test_heldout_phrasings_and_products_only_in_test():
    splits = cs.generate(seed=1, sizes={"train": 600, "validation": 60, "test": 120}, task="both")
    held_phrases = [p[-1].lower() for p in cs._INTENTS.values()]
    held_openings = [max(re.split(r"\{\w+\}", o[-1]), key=len) for o in cs._OPENINGS.values()]
    for split, rows in splits.items():
        for r in rows:
            text = r["input"].lower()
            if r["subtask"] == "intent":
                assert any(p in text for p in held_phrases) == (split == "test"), r["input"]
            else:
                assert (r["product"] in cs.HELDOUT_PRODUCTS) == (split == "test")
                assert any(o in r["messages"][0]["content"] for o in held_openings) == (split == "test")
    tested = {r["product"] for r in splits["test"] if r["subtask"] == "reply"}
    assert tested <= set(cs.HELDOUT_PRODUCTS) and len(tested) >= 3


def _number(pattern: str, text: str) -> int:
    return int(re.search(pattern, text).group(1))


def test_chat_actions_follow_the_policy():
    rows = cs.generate(seed=2, sizes={"train": 600, "validation": 0, "test": 0}, task="chat")["train"]
    assert set(Counter(r["action"] for r in rows)) == set(cs.ACTIONS)
    for r in rows:
        said = " ".join(m["content"] for m in r["messages"][:-1] if m["role"] == "user")
        assert r["messages"][-1] == {"role": "assistant", "content": r["output"]}
        assert [m["role"] for m in r["messages"]][::2] == ["user"] * ((len(r["messages"]) + 1) // 2)
        if any(s in said for s in cs._MANAGER) or "burned" in said or "cut my finger" in said:
            assert r["action"] == "escalate"
        elif r["flow"] == "refund":
            days, price = _number(r"(\d+) days ago", said), _number(r"paid \$(\d+)", said)
            want = "deny_refund" if days > cs.REFUND_DAYS else "escalate" if price > cs.REFUND_LIMIT else "refund"
            assert r["action"] == want
        elif r["flow"] == "shipping":
            days = _number(r"(\d+) days ago", said)
            assert r["action"] == ("reship" if days > cs.SHIPPING_DAYS else "inform_shipping")
        else:  # an account change needs the order number and e-mail first
            assert r["action"] == ("update_account" if re.search(r"\d{6}", said) else "verify_identity")
        assert cs.reply_action(r["output"]) == r["action"]
    m = cs.evaluate([r["output"] for r in rows], rows)
    assert m["policy_fact_accuracy"] == m["action_accuracy"] == m["rougeL"] == 1.0
    assert m["contradiction_rate"] == m["false_escalation_rate"] == 0.0


def test_bad_options_raise():
    with pytest.raises(ValueError, match="task"):
        cs.generate(seed=0, task="faq")
    with pytest.raises(TypeError):
        cs.generate(seed=0, products=3)


# ---------------------------------------------------------------- readers


def test_read_banking77_normalises_labels_and_keeps_quoted_newlines(tmp_path):
    path = tmp_path / "banking77_train.csv"
    path.write_text(
        'text,category\n"My card, ordered\nlast week, is missing",card_arrival\n'
        "Where is my refund?,Refund_not_showing_up\nPayment undone,reverted_card_payment?\n",
        encoding="utf-8",
    )
    rows = get("customer_support").read_file(path)
    assert [r["output"] for r in rows] == ["card_arrival", "refund_not_showing_up", "reverted_card_payment"]
    assert rows[0]["input"] == "Customer: My card, ordered\nlast week, is missing"
    assert rows[0]["choices"] == list(cs.LABELS) and rows[2]["id"] == "banking77_train-5"


def test_read_banking77_bad_rows_name_their_line(tmp_path):
    path = tmp_path / "b77.csv"
    path.write_text('text,category\n"two\nlines",card_arrival\nhello,greeting\n', encoding="utf-8")
    with pytest.raises(ScenarioDataError, match=r"b77\.csv: row 4: category 'greeting' is not one of the 77"):
        cs.read(path)
    wrong = tmp_path / "w.csv"
    wrong.write_text("query,label\nx,card_arrival\n", encoding="utf-8")
    with pytest.raises(ScenarioDataError, match=r"w\.csv: row 1: header lacks column\(s\) text, category"):
        cs.read(wrong, fmt="banking77")


def test_read_bitext(tmp_path):
    path = tmp_path / "bitext.csv"
    path.write_text(
        "flags,instruction,category,intent,response\n"
        'B,cancel order 12,ORDER,cancel_order,"Sure.\n1. Log in to {{Website Name}}."\n'
        "B,  ,ORDER,cancel_order,Empty question\n",
        encoding="utf-8",
    )
    with pytest.raises(ScenarioDataError, match=r"bitext\.csv: row 4: empty 'instruction' or 'response'"):
        cs.read(path)
    path.write_text(path.read_text().rsplit("B,  ,", 1)[0], encoding="utf-8")
    (row,) = cs.read(path)
    assert row["messages"] == [
        {"role": "user", "content": "cancel order 12"},
        {"role": "assistant", "content": "Sure.\n1. Log in to {{Website Name}}."},
    ]
    assert (row["intent"], row["category"], row["output"]) == ("cancel_order", "ORDER", row["messages"][1]["content"])


def test_read_abcd_with_kb(tmp_path):
    convo = {
        "convo_id": 7,
        "scenario": {"flow": "product_defect", "subflow": "return_size"},
        "original": [
            ["agent", "Hi!"],
            ["agent", "How can I help?"],
            ["customer", "Return my jeans."],
            ["action", "Account has been pulled up for Ann."],
            ["agent", "Done, anything else?"],
            ["customer", "No thanks."],
        ],
    }
    path = tmp_path / "abcd_sample.json"
    path.write_text(json.dumps([convo]), encoding="utf-8")
    (tmp_path / "abcd_kb.json").write_text(json.dumps({"return_size": ["pull-up-account", "validate-purchase"]}))
    (row,) = cs.read(path)
    assert [m["role"] for m in row["messages"]] == ["assistant", "user", "assistant"]
    assert row["messages"][0]["content"] == "Hi! How can I help?"
    assert row["output"] == "[action] Account has been pulled up for Ann. Done, anything else?"
    assert (row["id"], row["action"], row["required_actions"]) == (
        "abcd-7",
        "return_size",
        ["pull-up-account", "validate-purchase"],
    )
    nested = tmp_path / "abcd_v1.json"
    nested.write_text(json.dumps({"train": [convo], "dev": [convo]}), encoding="utf-8")
    assert len(cs.read(nested)) == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"original": [["robot", "hi"]]}]), encoding="utf-8")
    with pytest.raises(ScenarioDataError, match=r"bad\.json: dialogue 0, turn 0: expected \[agent\|customer\|action"):
        cs.read(bad)


def test_read_unknown_format(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(ScenarioDataError, match="pass fmt="):
        cs.read(path)
    with pytest.raises(ValueError, match="unknown format"):
        cs.read(path, fmt="xlsx")


# ---------------------------------------------------------------- evaluator


def _intents(labels):
    return [
        {"id": str(i), "input": "Customer: x", "output": lab, "choices": list(cs.LABELS), "subtask": "intent"}
        for i, lab in enumerate(labels)
    ]


def test_evaluate_intents_hand_computed():
    rows = _intents(["card_arrival", "change_pin", "card_arrival", "exchange_rate"])
    preds = ["card_arrival", "change_pin", "", "no idea"]  # 2 right, 1 empty, 1 unparsable
    m = cs.evaluate(preds, rows)
    assert m["gen_accuracy"] == pytest.approx(0.5) and m["parse_failure_rate"] == pytest.approx(0.5)
    # classes: card_arrival F1 2/3 (1 of 2 found), change_pin 1, exchange_rate 0, <unparsed> 0
    assert m["gen_f1_macro"] == pytest.approx((2 / 3 + 1 + 0 + 0) / 4)
    assert m["ref_majority_accuracy"] == pytest.approx(0.5) and "accuracy" not in m
    probs = [dict.fromkeys(cs.LABELS, 0.0) for _ in rows]
    for p, gold in zip(probs, ["card_arrival", "change_pin", "change_pin", "exchange_rate"]):
        p[gold] = 0.9
    m = cs.evaluate(preds, rows, probs)
    assert m["accuracy"] == pytest.approx(0.75)
    # card_arrival P1 R1/2 -> 2/3; change_pin P1/2 R1 -> 2/3; exchange_rate 1
    assert m["f1_macro"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def _reply_row(action, **v):
    text, facts, forbidden = cs._reply(action, **v)
    return {
        "id": action,
        "input": "Customer: x",
        "output": text,
        "subtask": "reply",
        "action": action,
        "facts": facts,
        "forbidden": forbidden,
    }


def test_evaluate_replies_hand_computed():
    rows = [
        _reply_row("refund", product="kettle", price=40),
        _reply_row("deny_refund", product="kettle"),
        _reply_row("escalate", why="Of course."),
        _reply_row("verify_identity"),
    ]
    preds = [
        rows[0]["output"],  # perfect
        # states the window and store credit but also approves the refund: contradiction, two actions
        "Your refund of $40 is approved. It is outside our 30-day refund window, so I cannot refund it. Store credit?",
        "",  # empty
        "Before I change anything I need to verify your identity.",  # action right, misses "order number"
    ]
    m = cs.evaluate(preds, rows)
    assert m["policy_fact_accuracy"] == pytest.approx(1 / 4)
    assert m["fact_recall"] == pytest.approx((3 + 3 + 0 + 1) / (3 + 3 + 3 + 2))
    assert m["contradiction_rate"] == pytest.approx(1 / 4)
    assert m["action_accuracy"] == pytest.approx(2 / 4)
    assert m["escalation_recall"] == 0.0 and m["false_escalation_rate"] == 0.0
    assert m["rougeL"] == pytest.approx((1 + m_rouge(preds[1], rows[1]) + 0 + m_rouge(preds[3], rows[3])) / 4)
    assert cs.evaluate(["I have escalated it."] * 2, rows[:2])["false_escalation_rate"] == 1.0


def m_rouge(pred, row):
    from finetune.metrics.text import rouge

    return rouge([pred], [row["output"]])["rougeL"]


def test_evaluate_mixed_and_real_rows():
    rows = cs.generate(seed=5, sizes={"train": 0, "validation": 0, "test": 60}, task="both")["test"]
    m = cs.evaluate([r["output"] for r in rows], rows)
    assert m["gen_accuracy"] == m["policy_fact_accuracy"] == m["action_accuracy"] == 1.0
    bitext = [{"id": "b", "input": "q", "output": "Sure, log in.", "subtask": "reply", "facts": [], "forbidden": []}]
    assert cs.evaluate(["Sure, log in."], bitext) == {"rougeL": 1.0}
    with pytest.raises(ValueError, match="predictions"):
        cs.evaluate([], rows)


# ---------------------------------------------------------------- chat formatting


@pytest.fixture(scope="module")
def chat_rows_and_tokenizer(tmp_path_factory):
    """Chat rows as the pipeline checks them, and a small tokenizer trained once on their text."""
    from finetune.model.tokenizer import train_tokenizer

    splits = cs.generate(seed=0, sizes={"train": 20, "validation": 0, "test": 0}, task="chat")
    rows, _ = check_rows(splits["train"], DataSpec(sources=[], shape="chat"), "test")
    texts = [flat for r in rows for flat in (r["input"], r["output"])]
    return rows, train_tokenizer(texts * 2, 320, tmp_path_factory.mktemp("tok"))


@pytest.mark.parametrize("chat_template", [True, False])
def test_formatted_chat_row_trains_agent_turns_only(chat_rows_and_tokenizer, chat_template):
    import copy

    from finetune.data.format import Template, encode_example

    rows, tokenizer = chat_rows_and_tokenizer
    row = next(r for r in rows if len(r["messages"]) >= 5)
    if not chat_template:
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.chat_template = None
    template = Template.for_tokenizer(tokenizer, get("customer_support").system, None, "chat")
    example = encode_example(template, tokenizer, row, 1024, "truncate", False)
    spans, current = [], []
    for token, label in zip(example["input_ids"], example["labels"]):
        if label != -100:
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    spans += [current] if current else []
    agent = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
    assert len(spans) == len(agent) >= 3
    for span, said in zip(spans, agent):
        text = tokenizer.decode(span)
        assert text.startswith(said) and text[len(said) :].strip() in (tokenizer.eos_token, "")
    trained = tokenizer.decode([t for s in spans for t in s])
    for turn in (m["content"] for m in row["messages"] if m["role"] == "user"):
        assert turn not in trained
    prompt = template.prompt(row)  # what evaluation generates from: the dialogue up to the reply
    assert row["messages"][-2]["content"] in prompt and row["output"] not in prompt
