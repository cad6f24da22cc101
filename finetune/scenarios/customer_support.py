"""Customer support: 77-way banking intents and policy-grounded replies in multi-turn chat.

Two subtasks, chosen with the generator option ``task`` (``intents``, ``chat`` or ``both``):

* ``intents``: a customer message -> one of the 77 BANKING77 intents (rows carry ``choices``).
  Labels are BANKING77's names, lower-cased and without the trailing ``?`` of
  ``reverted_card_payment?`` so that a label is one plain token sequence.
* ``chat``: a dialogue with Lumen Store's support agent as ``messages`` (role/content turns);
  the last assistant turn is the reference reply. What that reply must do follows from
  :data:`POLICY` and the facts said earlier in the dialogue (days since delivery, price, whether
  the customer is verified, days since ordering, a request for a manager, an injury). Each chat
  row carries the ground truth the evaluator needs: ``action`` (one of :data:`ACTIONS`),
  ``facts`` (phrases the policy dictates the reply states) and ``forbidden`` (phrases that would
  contradict it, e.g. approving a refund outside the window). Chat rows also carry ``input``
  (the dialogue before the reply, flattened) and ``output`` (the reply), so they work under
  ``data.shape: instruction`` too, where only the last reply is trained; under
  ``data.shape: chat`` every agent turn is trained and intent rows become one user turn and
  one assistant turn.

Each intent has one phrasing and each chat flow one customer opening that appear only in the
test split, and products in ``HELDOUT_PRODUCTS`` appear only in the test split.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finetune.scenarios._common import (
    argmax_labels,
    check_lengths,
    data_error,
    fill_splits,
    gen_labels,
    iter_csv,
    read_text,
    read_with,
)
from finetune.scenarios.base import Row, Scenario, Splits

STORE = "Lumen Store"
REFUND_DAYS = 30
REFUND_LIMIT = 200  # dollars: a larger refund inside the window goes to a supervisor
SHIPPING_DAYS = 5
POLICY: tuple[str, ...] = (
    "1. Verify identity (order number and account email) before any refund or account change.",
    f"2. Refunds only within {REFUND_DAYS} days of delivery; later, refuse and offer store credit.",
    f"3. Refunds over ${REFUND_LIMIT} inside the window are escalated to a supervisor.",
    "4. Escalate at once when the customer asks for a manager or reports an injury.",
    f"5. Standard delivery takes up to {SHIPPING_DAYS} business days; a later order gets a free express replacement.",
)

# action -> the phrase that marks it in a reply (how the evaluator reads which action a reply took)
ACTIONS: dict[str, str] = {
    "refund": "is approved",
    "deny_refund": "cannot refund",
    "escalate": "escalated",
    "verify_identity": "verify your identity",
    "update_account": "has been updated",
    "inform_shipping": "on its way",
    "reship": "free replacement",
}

# ---------------------------------------------------------------- intents

# label -> phrasings; the last one of each appears only in the test split
_INTENTS: dict[str, tuple[str, ...]] = {
    "card_arrival": (
        "my card still has not arrived",
        "when will my new card get here",
        "the card you sent never showed up",
    ),
    "card_linking": (
        "how do I link my card to the app",
        "I want to add my existing card to my account",
        "can I connect a card I already have",
    ),
    "exchange_rate": (
        "what exchange rate do you use",
        "how do you set your currency rates",
        "where can I see today's conversion rate",
    ),
    "card_payment_wrong_exchange_rate": (
        "my card payment used a bad exchange rate",
        "I was charged the wrong rate for a purchase abroad",
        "the rate on my card payment looks off",
    ),
    "extra_charge_on_statement": (
        "there is an extra charge on my statement",
        "I see a fee I do not understand",
        "why is there an additional charge listed",
    ),
    "pending_cash_withdrawal": (
        "my cash withdrawal is still pending",
        "the ATM withdrawal shows as pending",
        "why is my cash withdrawal not complete yet",
    ),
    "fiat_currency_support": (
        "which currencies can I hold",
        "do you support euros and pounds",
        "what fiat money can I keep in the account",
    ),
    "card_delivery_estimate": (
        "how long does card delivery take",
        "how many days until a card is delivered",
        "what is the shipping time for a card",
    ),
    "automatic_top_up": (
        "how do I set up auto top up",
        "can my balance top up automatically",
        "turn on automatic top ups for me",
    ),
    "card_not_working": ("my card is not working", "my card keeps failing everywhere", "the card stopped functioning"),
    "exchange_via_app": (
        "can I exchange currency in the app",
        "how do I swap money between currencies",
        "I want to convert my balance using the app",
    ),
    "lost_or_stolen_card": ("I lost my card", "my card was stolen", "someone took my bank card"),
    "age_limit": ("how old do I have to be to open an account", "is there a minimum age", "can a teenager sign up"),
    "pin_blocked": ("my PIN is blocked", "I entered the wrong PIN too many times", "my PIN got locked"),
    "contactless_not_working": (
        "contactless payments do not work",
        "tapping my card does nothing",
        "my card will not pay by tap",
    ),
    "top_up_by_bank_transfer_charge": (
        "is there a fee to top up by bank transfer",
        "do you charge for transfer top ups",
        "what does a bank transfer top up cost",
    ),
    "pending_top_up": (
        "my top up is still pending",
        "the top up has not gone through yet",
        "why is my top up stuck as pending",
    ),
    "cancel_transfer": ("I need to cancel a transfer", "please stop the payment I just sent", "can I undo a transfer"),
    "top_up_limits": ("what is the most I can top up", "is there a top up limit", "how much can I add at once"),
    "wrong_amount_of_cash_received": (
        "the ATM gave me the wrong amount",
        "I got less cash than I asked for",
        "the machine dispensed too little money",
    ),
    "card_payment_fee_charged": (
        "I was charged a fee for a card payment",
        "why did a card purchase cost me a fee",
        "there is a charge on my card payment",
    ),
    "transfer_not_received_by_recipient": (
        "my friend has not received my transfer",
        "the person I paid says nothing arrived",
        "the recipient never got the money",
    ),
    "supported_cards_and_currencies": (
        "which cards and currencies do you support",
        "can I use any card with you",
        "what cards do you accept for top ups",
    ),
    "getting_virtual_card": (
        "how do I get a virtual card",
        "I would like a virtual card",
        "can you give me an online card",
    ),
    "card_acceptance": ("where is my card accepted", "can I use the card in every shop", "will shops take this card"),
    "top_up_reverted": ("my top up was reversed", "the money I added was taken back", "why did my top up bounce back"),
    "balance_not_updated_after_cheque_or_cash_deposit": (
        "my cash deposit is not in my balance",
        "I deposited a cheque and the balance did not change",
        "the cheque I paid in is missing",
    ),
    "card_payment_not_recognised": (
        "I do not recognise a card payment",
        "there is a purchase I did not make",
        "a card payment on my account is not mine",
    ),
    "edit_personal_details": (
        "how do I change my personal details",
        "I need to update my name",
        "I want to edit my address on file",
    ),
    "why_verify_identity": (
        "why do I need to verify my identity",
        "why are you asking for my ID",
        "what is identity checking for",
    ),
    "unable_to_verify_identity": (
        "I cannot verify my identity",
        "the identity check keeps failing",
        "my ID verification will not go through",
    ),
    "get_physical_card": (
        "how do I get a physical card",
        "I want a plastic card",
        "can I have a real card in the post",
    ),
    "visa_or_mastercard": ("is the card Visa or Mastercard", "which network is my card on", "do you issue Visa cards"),
    "topping_up_by_card": (
        "can I top up with my debit card",
        "how do I add money using a card",
        "I want to load money from another card",
    ),
    "disposable_card_limits": (
        "how many times can I use a disposable card",
        "what are the limits on single use cards",
        "is there a cap on disposable cards",
    ),
    "compromised_card": (
        "I think my card details were leaked",
        "my card may be compromised",
        "someone might have copied my card",
    ),
    "atm_support": ("which ATMs can I use", "can I withdraw at any cash machine", "do ATMs abroad take my card"),
    "direct_debit_payment_not_recognised": (
        "there is a direct debit I did not set up",
        "I do not know this direct debit",
        "an unknown direct debit came out",
    ),
    "passcode_forgotten": ("I forgot my passcode", "I cannot remember my app passcode", "how do I reset my passcode"),
    "declined_cash_withdrawal": (
        "the ATM declined my withdrawal",
        "I could not take out cash",
        "my cash withdrawal was refused",
    ),
    "pending_card_payment": (
        "my card payment is pending",
        "a purchase still shows as pending",
        "why is my card payment not finished",
    ),
    "lost_or_stolen_phone": ("I lost my phone", "my phone was stolen with the app on it", "someone stole my mobile"),
    "request_refund": ("I want a refund", "please give me my money back", "how do I ask for a refund"),
    "declined_transfer": (
        "my transfer was declined",
        "the bank refused my transfer",
        "why did my transfer get rejected",
    ),
    "refund_not_showing_up": (
        "my refund is not showing",
        "the shop refunded me but I cannot see it",
        "where is the refund I was promised",
    ),
    "declined_card_payment": (
        "my card payment was declined",
        "the shop refused my card",
        "why was my purchase rejected",
    ),
    "pending_transfer": (
        "my transfer is still pending",
        "the transfer has not completed",
        "why is my transfer waiting",
    ),
    "terminate_account": ("I want to close my account", "please delete my account", "how do I cancel my membership"),
    "card_swallowed": (
        "the ATM kept my card",
        "the machine swallowed my card",
        "my card got stuck in the cash machine",
    ),
    "transaction_charged_twice": (
        "I was charged twice",
        "the same payment went out two times",
        "there is a duplicate charge",
    ),
    "verify_source_of_funds": (
        "why do you need the source of my funds",
        "how do I prove where my money comes from",
        "you asked about my source of funds",
    ),
    "transfer_timing": (
        "how long does a transfer take",
        "when will my transfer arrive",
        "how many days for a bank transfer",
    ),
    "reverted_card_payment": ("my card payment was reverted", "a purchase was reversed", "the shop payment got undone"),
    "change_pin": ("how do I change my PIN", "I want a new PIN", "can I pick a different PIN"),
    "beneficiary_not_allowed": (
        "I cannot add this beneficiary",
        "the payee is not allowed",
        "why can I not send money to this person",
    ),
    "transfer_fee_charged": (
        "I was charged a fee for a transfer",
        "why did my transfer cost extra",
        "there is a fee on my transfer",
    ),
    "receiving_money": ("how do I receive money", "can someone send me money", "how do I get paid into my account"),
    "failed_transfer": ("my transfer failed", "the transfer did not go through", "the money I sent bounced"),
    "transfer_into_account": (
        "how do I transfer money into my account",
        "I want to move money in from my bank",
        "how can I send money to myself here",
    ),
    "verify_top_up": (
        "why do I have to verify my top up",
        "how do I confirm a top up",
        "the top up needs verification",
    ),
    "getting_spare_card": ("can I get a spare card", "I want a second card", "how do I order an extra card"),
    "top_up_by_cash_or_cheque": ("can I top up with cash", "can I pay in a cheque", "how do I add money with cash"),
    "order_physical_card": ("I want to order a card", "please send me a card", "where do I order my first card"),
    "virtual_card_not_working": (
        "my virtual card does not work",
        "the online card keeps failing",
        "my virtual card was rejected",
    ),
    "wrong_exchange_rate_for_cash_withdrawal": (
        "the ATM abroad gave a bad rate",
        "my cash withdrawal used the wrong exchange rate",
        "the rate for my foreign cash was wrong",
    ),
    "get_disposable_virtual_card": (
        "how do I get a disposable card",
        "I want a single use virtual card",
        "can I make a throwaway card",
    ),
    "top_up_failed": ("my top up failed", "the top up did not work", "adding money was unsuccessful"),
    "balance_not_updated_after_bank_transfer": (
        "my balance did not update after a transfer",
        "the bank transfer is not in my balance",
        "I sent money in but the balance is the same",
    ),
    "cash_withdrawal_not_recognised": (
        "there is a cash withdrawal I did not make",
        "I do not recognise an ATM withdrawal",
        "someone took cash from my account",
    ),
    "exchange_charge": (
        "do you charge for exchanging currency",
        "is there a fee to exchange money",
        "what does a currency exchange cost",
    ),
    "top_up_by_card_charge": (
        "is there a fee to top up by card",
        "do card top ups cost anything",
        "what is the charge for a card top up",
    ),
    "activate_my_card": ("how do I activate my card", "my new card needs activating", "I want to turn on my card"),
    "cash_withdrawal_charge": (
        "why was I charged for a withdrawal",
        "is there a fee for ATM cash",
        "I paid a charge for taking out cash",
    ),
    "card_about_to_expire": (
        "my card is about to expire",
        "my card expires next month",
        "what happens when my card runs out",
    ),
    "apple_pay_or_google_pay": (
        "can I use Apple Pay",
        "does the card work with Google Pay",
        "how do I add the card to my phone wallet",
    ),
    "verify_my_identity": (
        "how do I verify my identity",
        "where do I upload my ID",
        "what do I need to prove who I am",
    ),
    "country_support": (
        "which countries do you support",
        "can I open an account from abroad",
        "is the service available in my country",
    ),
}
LABELS: tuple[str, ...] = tuple(_INTENTS)
_OPEN = ("", "", "Hi, ", "Hello, ", "Hey, ", "Quick question: ", "Please help, ", "Excuse me, ")
_CLOSE = ("", "", "", "?", ".", " please.", " Thanks!", ", can you help?", " as soon as possible.")


def _intent_row(rng: random.Random, split: str) -> Row:
    label = rng.choice(LABELS)
    phrasings = _INTENTS[label]
    core = phrasings[-1] if split == "test" else rng.choice(phrasings[:-1])
    text = rng.choice(_OPEN) + core + rng.choice(_CLOSE)
    text = text[0].upper() + text[1:]
    return {"input": f"Customer: {text}", "output": label, "choices": list(LABELS), "subtask": "intent"}


# ---------------------------------------------------------------- policy-grounded chat

# product -> price in dollars (some above REFUND_LIMIT so escalation is reachable)
TRAIN_PRODUCTS: dict[str, int] = {
    "desk lamp": 45,
    "coffee grinder": 89,
    "office chair": 240,
    "backpack": 65,
    "blender": 120,
    "headphones": 180,
    "rain jacket": 95,
    "monitor": 310,
    "toaster": 35,
    "standing desk": 420,
    "kettle": 40,
    "smart watch": 260,
    "yoga mat": 30,
    "air purifier": 150,
}
HELDOUT_PRODUCTS: dict[str, int] = {
    "electric scooter": 520,
    "table fan": 55,
    "camera bag": 75,
    "picnic basket": 60,
    "espresso machine": 340,
}
_FIELDS = ("address", "email", "phone number")
_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivan", "June", "Kai", "Lena", "Marco", "Nia")

# flow -> customer openings; the last one of each appears only in the test split
_OPENINGS: dict[str, tuple[str, ...]] = {
    "refund": (
        "I want to return my {product} and get my money back.",
        "Can I get a refund for the {product}?",
        "I would like a refund on the {product} I bought.",
        "The {product} is not for me, please refund it.",
    ),
    "account": (
        "I need to change the {field} on my account to {new}.",
        "Please update my {field} to {new}.",
        "Can you change my {field} to {new} for me?",
        "My {field} is out of date, the new one is {new}.",
    ),
    "shipping": (
        "Where is my {product}?",
        "My {product} has not arrived yet.",
        "When will my {product} be delivered?",
        "I am still waiting for the {product} I ordered.",
    ),
}
_MANAGER = ("I want to speak to a manager.", "Get me your supervisor, please.", "Let me talk to someone in charge.")
_INJURY = ("The {product} overheated and burned my hand.", "The {product} broke and cut my finger.")
_ASK_ID = "I can help with that. First I need to verify your identity: please give me your order number and the email on the account."


def _id_answer(rng: random.Random, name: str) -> str:
    order, email = rng.randint(100000, 999999), f"{name.lower()}{rng.randint(1, 99)}@example.com"
    return rng.choice(
        (f"Order {order}, email {email}.", f"It is order {order} and {email}.", f"{email}, order number {order}.")
    )


def _reply(action: str, **v: Any) -> tuple[str, list[str], list[str]]:
    """The policy's reply for ``action``: (text, facts it must state, phrases that would contradict it)."""
    if action == "refund":
        text = (
            f"Your refund of ${v['price']} for the {v['product']} {ACTIONS['refund']}. "
            f"It reaches your original payment method within 5 business days."
        )
        return (
            text,
            [f"refund of ${v['price']}", ACTIONS["refund"], "5 business days"],
            [ACTIONS["deny_refund"], ACTIONS["escalate"]],
        )
    if action == "deny_refund":
        text = (
            f"I am sorry, the {v['product']} is outside our {REFUND_DAYS}-day refund window, so I "
            f"{ACTIONS['deny_refund']} it. I can offer store credit instead."
        )
        return (
            text,
            [f"{REFUND_DAYS}-day refund window", ACTIONS["deny_refund"], "store credit"],
            [ACTIONS["refund"], "5 business days", ACTIONS["escalate"]],
        )
    if action == "escalate":
        text = (
            f"{v['why']} I have {ACTIONS['escalate']} your case to a supervisor, who will contact you within 24 hours."
        )
        return (
            text,
            [ACTIONS["escalate"], "supervisor", "24 hours"],
            [ACTIONS["refund"], ACTIONS["deny_refund"], ACTIONS["update_account"]],
        )
    if action == "verify_identity":
        text = (
            f"Before I change anything I need to {ACTIONS['verify_identity']}. Please give me your order "
            f"number and the email on the account."
        )
        return text, [ACTIONS["verify_identity"], "order number"], [ACTIONS["update_account"]]
    if action == "update_account":
        text = f"Thank you. Your {v['field']} {ACTIONS['update_account']} and we have sent you a confirmation email."
        return (
            text,
            [f"your {v['field']} {ACTIONS['update_account']}", "confirmation email"],
            [ACTIONS["verify_identity"]],
        )
    if action == "inform_shipping":
        text = (
            f"Your {v['product']} is {ACTIONS['inform_shipping']}. Standard delivery takes up to "
            f"{SHIPPING_DAYS} business days, so it should arrive soon."
        )
        return text, [ACTIONS["inform_shipping"], f"{SHIPPING_DAYS} business days"], [ACTIONS["reship"]]
    text = (
        f"I am sorry your {v['product']} is late. I have sent a {ACTIONS['reship']} by express shipping; "
        f"it arrives within 2 business days."
    )
    return text, [ACTIONS["reship"], "2 business days"], [ACTIONS["inform_shipping"]]


def _days_phrase(rng: random.Random, days: int, what: str) -> str:
    return rng.choice(
        (f"It was {what} {days} days ago.", f"About {days} days ago.", f"{days} days ago.", f"I think {days} days ago.")
    )


def _refund_turns(rng: random.Random, v: dict[str, Any]) -> tuple[list[tuple[str, str]], str, dict[str, Any]]:
    turns = [
        ("assistant", _ASK_ID),
        ("user", _id_answer(rng, v["name"])),
        ("assistant", f"Thank you, {v['name']}, you are verified. How many days ago was the {v['product']} delivered?"),
    ]
    days = rng.choice((rng.randint(1, REFUND_DAYS - 1), rng.randint(REFUND_DAYS + 1, 90)))
    turns.append(("user", _days_phrase(rng, days, "delivered")))
    kind = rng.random()
    if kind < 0.12:
        turns.append(("user", rng.choice(_INJURY).format(product=v["product"])))
        return turns, "escalate", {"why": "I am very sorry you were hurt."}
    if kind < 0.2:
        turns.append(("user", rng.choice(_MANAGER)))
        return turns, "escalate", {"why": "Of course."}
    if days > REFUND_DAYS:
        return turns, "deny_refund", {}
    if v["price"] > REFUND_LIMIT:
        return turns, "escalate", {"why": f"Refunds over ${REFUND_LIMIT} need a supervisor's approval."}
    return turns, "refund", {}


def _account_turns(rng: random.Random, v: dict[str, Any]) -> tuple[list[tuple[str, str]], str, dict[str, Any]]:
    kind = rng.random()
    if kind < 0.3:  # wants the change before any identity check
        return [], "verify_identity", {}
    if kind < 0.4:
        refusal = rng.choice(
            ("I would rather not say. Just change it.", "I do not have those details. Change it anyway.")
        )
        return [("assistant", _ASK_ID), ("user", refusal)], "verify_identity", {}
    turns = [("assistant", _ASK_ID), ("user", _id_answer(rng, v["name"]))]
    if kind < 0.48:
        turns.append(("user", rng.choice(_MANAGER)))
        return turns, "escalate", {"why": "Of course."}
    return turns, "update_account", {}


def _new_value(rng: random.Random, field: str, name: str) -> str:
    if field == "address":
        return f"{rng.randint(2, 999)} {rng.choice(('Oak', 'Pine', 'Elm', 'Lake'))} Street"
    if field == "email":
        return f"{name.lower()}.new{rng.randint(1, 99)}@example.com"
    return f"555-{rng.randint(1000, 9999)}"


def _shipping_turns(rng: random.Random, v: dict[str, Any]) -> tuple[list[tuple[str, str]], str, dict[str, Any]]:
    days = rng.randint(1, 12)
    turns = [
        ("assistant", f"Sorry for the wait, {v['name']}. How many business days ago did you order it?"),
        ("user", _days_phrase(rng, days, "ordered")),
    ]
    if rng.random() < 0.1:
        turns.append(("user", rng.choice(_MANAGER)))
        return turns, "escalate", {"why": "Of course."}
    return turns, ("reship" if days > SHIPPING_DAYS else "inform_shipping"), {}


def _merge(turns: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Consecutive turns of one role become one turn, as chat templates expect roles to alternate."""
    out: list[dict[str, str]] = []
    for role, text in turns:
        if out and out[-1]["role"] == role:
            out[-1]["content"] += " " + text
        else:
            out.append({"role": role, "content": text})
    return out


def flatten(messages: list[dict[str, str]]) -> str:
    """A dialogue as ``Customer:``/``Agent:`` lines: the ``input`` of a chat row, for instruction use and samples."""
    who = {"user": "Customer", "assistant": "Agent", "system": "System"}
    return "\n".join(f"{who[m['role']]}: {m['content']}" for m in messages)


def _chat_row(rng: random.Random, split: str) -> Row:
    products = HELDOUT_PRODUCTS if split == "test" else TRAIN_PRODUCTS
    product = rng.choice(sorted(products))
    v: dict[str, Any] = {
        "product": product,
        "price": products[product],
        "name": rng.choice(_NAMES),
        "field": rng.choice(_FIELDS),
    }
    v["new"] = _new_value(rng, v["field"], v["name"])
    flow = rng.choice(sorted(_OPENINGS))
    openings = _OPENINGS[flow]
    opening = (openings[-1] if split == "test" else rng.choice(openings[:-1])).format(**v)
    if flow == "refund":
        opening += f" I paid ${v['price']}."
    steps = {"refund": _refund_turns, "account": _account_turns, "shipping": _shipping_turns}[flow]
    turns, action, extra = steps(rng, v)
    text, facts, forbidden = _reply(action, **v, **extra)
    messages = _merge([("user", opening)] + turns)
    return {
        "input": flatten(messages),
        "output": text,
        "messages": messages + [{"role": "assistant", "content": text}],
        "subtask": "reply",
        "flow": flow,
        "action": action,
        "facts": facts,
        "forbidden": forbidden,
        "product": product,
    }


def generate(seed: int = 0, sizes: dict[str, int] | None = None, task: str = "both") -> Splits:
    """Intent messages and/or policy dialogues; "both" alternates the two at random."""
    if task not in ("intents", "chat", "both"):
        raise ValueError(f"customer_support: task must be 'intents', 'chat' or 'both', got {task!r}")
    rng = random.Random(seed)

    def make(split: str) -> Row:
        kind = task if task != "both" else rng.choice(("intents", "chat"))
        return _intent_row(rng, split) if kind == "intents" else _chat_row(rng, split)

    return fill_splits("customer_support", sizes, SCENARIO.default_sizes, make)


# ---------------------------------------------------------------- real formats


def normalise_label(label: str) -> str:
    """BANKING77 spells two labels oddly (``Refund_not_showing_up``, ``reverted_card_payment?``)."""
    return label.strip().lower().rstrip("?")


def _read_banking77(path: Path) -> list[Row]:
    rows = []
    for n, rec in iter_csv(path, ("text", "category")):
        text, label = rec["text"].strip(), normalise_label(rec["category"])
        if not text:
            raise data_error(path, n, "empty 'text'; every row needs the customer's message")
        if label not in _INTENTS:
            raise data_error(path, n, f"category {rec['category']!r} is not one of the 77 BANKING77 intents")
        rows.append(
            {
                "id": f"{path.stem}-{n}",
                "input": f"Customer: {text}",
                "output": label,
                "choices": list(LABELS),
                "subtask": "intent",
            }
        )
    return rows


def _read_bitext(path: Path) -> list[Row]:
    rows = []
    for n, rec in iter_csv(path, ("instruction", "response", "intent", "category")):
        question, answer = rec["instruction"].strip(), rec["response"].strip()
        if not question or not answer:
            raise data_error(path, n, "empty 'instruction' or 'response'; every row needs both")
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        rows.append(
            {
                "id": f"{path.stem}-{n}",
                "input": flatten(messages[:1]),
                "output": answer,
                "messages": messages,
                "subtask": "reply",
                "intent": rec["intent"].strip(),
                "category": rec["category"].strip(),
                "facts": [],
                "forbidden": [],
            }
        )
    return rows


_ABCD_ROLES = {"customer": "user", "agent": "assistant", "action": "assistant"}


def _abcd_kb(path: Path) -> dict[str, list[str]]:
    """ABCD's intent -> required action buttons (``kb.json``/``abcd_kb.json`` beside the dialogues), if there."""
    for name in ("abcd_kb.json", "kb.json"):
        kb = path.with_name(name)
        if kb.exists() and kb != path:
            try:
                data = json.loads(read_text(kb))
            except json.JSONDecodeError as exc:
                raise data_error(
                    kb, None, f"not valid JSON ({exc.msg}); it should map intents to action lists"
                ) from exc
            return data if isinstance(data, dict) else {}
    return {}


def _abcd_row(path: Path, n: int, convo: Any, kb: dict[str, list[str]]) -> Row:
    if not isinstance(convo, dict) or not isinstance(convo.get("original"), list):
        raise data_error(path, None, f"dialogue {n}: expected an object with an 'original' list of [speaker, text]")
    turns = []
    for k, turn in enumerate(convo["original"]):
        if not (isinstance(turn, list) and len(turn) == 2 and turn[0] in _ABCD_ROLES and isinstance(turn[1], str)):
            raise data_error(path, None, f"dialogue {n}, turn {k}: expected [agent|customer|action, text]")
        text = f"[action] {turn[1]}" if turn[0] == "action" else turn[1]
        turns.append((_ABCD_ROLES[turn[0]], text))
    messages = _merge(turns)
    last = max((k for k, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        raise data_error(path, None, f"dialogue {n} has no agent turn")
    messages = messages[: last + 1]
    scenario = convo.get("scenario") or {}
    subflow = str(scenario.get("subflow") or "")
    return {
        "id": f"abcd-{convo.get('convo_id', n)}",
        "input": flatten(messages[:-1]),
        "output": messages[-1]["content"],
        "messages": messages,
        "subtask": "reply",
        "flow": str(scenario.get("flow") or ""),
        "action": subflow,
        "required_actions": list(kb.get(subflow, [])),
        "facts": [],
        "forbidden": [],
    }


def _read_abcd(path: Path) -> list[Row]:
    """``abcd_sample.json`` (a list of dialogues) or ``abcd_v1.1.json`` ({"train": [...], "dev": [...], ...})."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise data_error(path, exc.lineno, f"not valid JSON ({exc.msg})") from exc
    if isinstance(data, dict):
        data = [c for part in data.values() if isinstance(part, list) for c in part]
    if not isinstance(data, list):
        raise data_error(path, None, "expected a list of ABCD dialogues or an object of such lists")
    kb = _abcd_kb(path)
    return [_abcd_row(path, n, convo, kb) for n, convo in enumerate(data)]


_READERS: dict[str, Callable[[Path], list[Row]]] = {
    "banking77": _read_banking77,
    "bitext": _read_bitext,
    "abcd": _read_abcd,
}


def _detect(path: Path) -> str:
    if path.suffix.lower() == ".json":
        return "abcd"
    if path.suffix.lower() == ".csv":
        header = read_text(path).split("\n", 1)[0]
        return "bitext" if "instruction" in header and "response" in header else "banking77"
    raise data_error(path, None, f"cannot tell the format from {path.suffix!r}; pass fmt= one of {', '.join(_READERS)}")


def read(path: Path, fmt: str | None = None) -> list[Row]:
    """BANKING77 CSV (``text,category``), Bitext CSV (instruction -> response) or ABCD dialogues JSON."""
    return read_with("customer_support", path, fmt, _READERS, _detect)


# ---------------------------------------------------------------- evaluation


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def reply_action(text: str) -> str | None:
    """The one action a reply takes by its marker phrase; None when it shows none or several."""
    found = [a for a, marker in ACTIONS.items() if marker in _norm(text)]
    return found[0] if len(found) == 1 else None


def _intent_scores(predictions: list[str], rows: list[Row], probs: list[dict[str, float]] | None) -> dict[str, float]:
    from finetune.metrics.classification import accuracy, f1

    truth = [r["output"] for r in rows]
    choices = rows[0]["choices"]
    out: dict[str, float] = {}
    if probs is not None:
        picked = argmax_labels(probs, choices)
        out.update(accuracy=accuracy(truth, picked), f1_macro=f1(truth, picked, average="macro"))
    labels, failure = gen_labels(predictions, choices)
    out.update(
        gen_accuracy=accuracy(truth, labels),
        gen_f1_macro=f1(truth, labels, average="macro"),
        parse_failure_rate=failure,
        ref_majority_accuracy=Counter(truth).most_common(1)[0][1] / len(truth),
    )
    return out


def _reply_scores(predictions: list[str], rows: list[Row]) -> dict[str, float]:
    """ROUGE-L for every reply; policy facts and actions for rows that carry them (generated ones)."""
    from finetune.metrics.text import rouge

    out = {"rougeL": rouge(predictions, [r["output"] for r in rows])["rougeL"]}
    graded = [(p, r) for p, r in zip(predictions, rows) if r.get("facts") or r.get("forbidden")]
    if graded:
        stated = [[_norm(f) in _norm(p) for f in r.get("facts", [])] for p, r in graded]
        contradicts = [any(_norm(f) in _norm(p) for f in r.get("forbidden", [])) for p, r in graded]
        out["policy_fact_accuracy"] = sum(all(s) and not c for s, c in zip(stated, contradicts)) / len(graded)
        out["fact_recall"] = sum(sum(s) for s in stated) / max(sum(len(s) for s in stated), 1)
        out["contradiction_rate"] = sum(contradicts) / len(graded)
    acted = [(reply_action(p), r["action"]) for p, r in zip(predictions, rows) if r.get("action") in ACTIONS]
    if acted:
        out["action_accuracy"] = sum(got == gold for got, gold in acted) / len(acted)
        escalate = [got == "escalate" for got, gold in acted if gold == "escalate"]
        others = [got == "escalate" for got, gold in acted if gold != "escalate"]
        if escalate:
            out["escalation_recall"] = sum(escalate) / len(escalate)
        if others:
            out["false_escalation_rate"] = sum(others) / len(others)
    return out


def evaluate(
    predictions: list[str], rows: list[Row], label_probs: list[dict[str, float]] | None = None
) -> dict[str, float]:
    """Intent rows (with ``choices``): accuracy/macro-F1 constrained and ``gen_``; reply rows: policy metrics.

    A reply is policy-correct when it states every fact of its row and none of its forbidden
    phrases; its action is read from the marker phrases in :data:`ACTIONS` (none or several: wrong).
    """
    check_lengths(predictions, rows, label_probs)
    out: dict[str, float] = {}
    intent = [i for i, r in enumerate(rows) if r.get("choices")]
    reply = [i for i, r in enumerate(rows) if not r.get("choices")]
    if intent:
        probs = [label_probs[i] for i in intent] if label_probs is not None else None
        out.update(_intent_scores([predictions[i] for i in intent], [rows[i] for i in intent], probs))
    if reply:
        out.update(_reply_scores([predictions[i] for i in reply], [rows[i] for i in reply]))
    return out


SCENARIO = Scenario(
    name="customer_support",
    task="mixed",
    system=f"You are {STORE}'s support agent. Name the customer's intent, or reply as the store's policy says.",
    card="customer_support_synthetic",
    generate=generate,
    read=read,
    evaluate=evaluate,
    formats={"banking77": "banking77", "bitext": "bitext_customer_support", "abcd": "abcd"},
    default_sizes={"train": 800, "validation": 100, "test": 100},
)
