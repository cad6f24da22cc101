"""`ft serve` (issue 18, point 2): OpenAI-compatible completions, chat and streaming over ft's batched generation.

A tiny chat model (trained for a few steps, so it answers and stops) is served in-process for the checks of
batching, per-request settings and errors, and once as the real `ft serve` process, called with the official
openai client, then stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

from finetune.commands import generate_command
from finetune.eval.generate import generate
from finetune.serve.app import create_app
from finetune.serve.engine import load_engine
from finetune.serve.rows import RowSampling, RowSpec, visible

REPO = Path(__file__).resolve().parents[1]
TEXTS = [f"Sentence {i}: the market rose {i} points and the patient felt good, or bad." for i in range(200)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A 2-layer width-32 chat model trained 40 steps on "the market rose i" -> "points ... felt good|bad"."""
    from finetune.model.core import CoreConfig, CoreForCausalLM
    from finetune.model.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("serve") / "tiny-chat"
    tok = train_tokenizer(TEXTS, 320, out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = CoreForCausalLM(
        CoreConfig(
            vocab_size=len(tok),
            width=32,
            layers=2,
            heads=4,
            context_length=64,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
        )
    )
    chats = [
        [
            {"role": "user", "content": f"the market rose {i}"},
            {"role": "assistant", "content": f"points and the patient felt {'good' if i % 2 else 'bad'}"},
        ]
        for i in range(32)
    ]
    rows = [tok(tok.apply_chat_template(c, tokenize=False), add_special_tokens=False)["input_ids"] for c in chats]
    longest = max(map(len, rows))
    ids = torch.tensor([r + [tok.pad_token_id] * (longest - len(r)) for r in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    try:
        for _ in range(40):
            model(input_ids=ids, labels=ids.masked_fill(ids == tok.pad_token_id, -100)).loss.backward()
            opt.step()
            opt.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def engine(model_dir):
    return load_engine(model_dir, "tiny-chat")


def with_client(engine, fn, **app_options):
    """Run ``fn(client, app)`` against the app in this process, its lifespan (the batcher) running."""

    async def main():
        app = create_app(engine, **app_options)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as client:
                return await fn(client, app)

    return asyncio.run(main())


def chat_body(content: str, **options) -> dict:
    return {"model": "tiny-chat", "messages": [{"role": "user", "content": content}], "temperature": 0, **options}


def sse_chunks(text: str) -> list:
    """The JSON events of a server-sent-event body; it must end with [DONE]."""
    data = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


# ---------------------------------------------------------------- per-row decoding


def test_visible_text_holds_back_what_may_become_a_stop_string():
    assert visible("the mar", ["market"], False, False) == ("the ", False)
    assert visible("the market rose", ["market"], False, False) == ("the ", True)
    assert visible("the mar", ["market"], True, False) == ("the mar", False)  # the row ended: show all
    assert visible("ab\ufffd", [], False, False) == ("ab", False)  # half a character waits for the rest
    assert visible("\n  points and ", [], False, True) == ("points and", False)  # chat text: stripped
    assert visible("x STOP y", ["zz", "STOP"], False, False) == ("x ", True)


def test_row_sampling_keeps_each_rows_temperature_top_p_and_seed():
    scores = torch.tensor([[0.0, 1.0, 3.0, 2.0]] * 4)
    rows = [
        RowSpec(4, temperature=0.0),
        RowSpec(4, temperature=1.0, top_p=0.85, seed=1),
        RowSpec(4, temperature=5.0, seed=1),
        RowSpec(4, temperature=5.0, seed=2),
    ]
    sampler, again = RowSampling(rows), RowSampling(rows)
    ids = torch.zeros(4, 1, dtype=torch.long)
    picks = [sampler(ids, scores).argmax(-1).tolist() for _ in range(200)]
    assert picks == [again(ids, scores).argmax(-1).tolist() for _ in range(200)]  # a seed repeats its draws
    assert torch.equal(sampler(ids, scores)[0], scores[0])  # greedy: untouched
    assert {p[1] for p in picks} == {2, 3}  # top_p 0.85: p(2) 0.64 + p(3) 0.24 reach it; 0 and 1 never drawn
    assert len({p[2] for p in picks}) == 4  # temperature 5 flattens: every token comes up
    assert [p[2] for p in picks] != [p[3] for p in picks]  # another seed, other draws


def test_chat_renders_as_training_did(engine):
    """One user message renders as `ft generate` renders its text; a longer chat keeps every turn."""
    from finetune.serve.engine import PromptError, chat_prompt

    template = engine.template
    assert template.shape == "instruction"
    one = chat_prompt(template, [{"role": "user", "content": "the market rose 3"}])
    assert str(one) == str(template.prompt({"input": "the market rose 3"}))
    with_system = chat_prompt(template, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    assert str(with_system).startswith("<|system|>\nBe brief.")
    turns = [("user", "the market rose 3"), ("assistant", "points"), ("user", "and then?")]
    chat = str(chat_prompt(template, [{"role": r, "content": c} for r, c in turns]))
    assert chat == "<|user|>\nthe market rose 3\n<|assistant|>\npoints<|eos|><|user|>\nand then?\n<|assistant|>\n"
    with pytest.raises(PromptError, match="end with a user message"):
        chat_prompt(template, [{"role": r, "content": c} for r, c in turns[:2]])


def test_rows_of_one_batch_keep_their_own_length_stop_and_sampling(engine):
    """Eight concurrent requests with different settings share batches; each answers as it would alone."""
    asks = [
        chat_body("the market rose 3", max_tokens=10),
        chat_body("the market rose 4", max_tokens=3),
        chat_body("the market rose 3", max_tokens=8, stop=[" patient"]),
        chat_body("the market rose 5", max_tokens=12, temperature=1.5, top_p=0.9, seed=7),
        chat_body("the market", max_tokens=20),
        chat_body("the market rose 4", max_tokens=8),
        chat_body("the market rose 3", max_tokens=8, stop="felt"),
        chat_body("Sentence 9", max_tokens=6),
    ]

    async def concurrently(client, app):
        replies = await asyncio.gather(*(client.post("/v1/chat/completions", json=a) for a in asks))
        return [r.json() for r in replies], list(app.state.batcher.sizes)

    together, sizes = with_client(engine, concurrently, window_s=0.2)
    assert max(sizes) > 1, sizes  # the window grouped concurrent requests

    async def one_by_one(client, app):
        return [(await client.post("/v1/chat/completions", json=a)).json() for a in asks]

    alone = with_client(engine, one_by_one)
    content = [r["choices"][0]["message"]["content"] for r in together]
    for k in range(len(asks)):  # greedy rows, and the seeded sampled row 3: the same answer alone or batched
        assert content[k] == alone[k]["choices"][0]["message"]["content"], k
    assert content[0].startswith("points and the patient felt ")
    assert together[0]["choices"][0]["finish_reason"] == "stop"  # eos, before max_tokens
    assert together[1]["choices"][0]["finish_reason"] == "length"
    assert together[1]["usage"]["completion_tokens"] == 3
    assert content[2] == "points and the" and together[2]["choices"][0]["finish_reason"] == "stop"
    assert content[6] == "points and the patient"
    assert together[3]["usage"]["completion_tokens"] <= 12


def test_streamed_chunks_add_up_to_the_whole_answer(engine):
    async def both(client, app):
        whole = await client.post("/v1/chat/completions", json=chat_body("the market rose 7", max_tokens=10))
        streamed = await client.post(
            "/v1/chat/completions",
            json=chat_body("the market rose 7", max_tokens=10, stream=True, stream_options={"include_usage": True}),
        )
        plain = await client.post(
            "/v1/completions",
            json={"model": "tiny-chat", "prompt": "the market", "max_tokens": 6, "temperature": 0, "stream": True},
        )
        return whole.json(), streamed, plain

    whole, streamed, plain = with_client(engine, both)
    assert streamed.headers["content-type"].startswith("text/event-stream")
    chunks = sse_chunks(streamed.text)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"] != ""
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 1
    assert chunks[-2]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    pieces = sse_chunks(plain.text)
    want = generate(engine.model, engine.tokenizer, ["the market"], max_new_tokens=6, progress=False)[0]
    assert "".join(c["choices"][0]["text"] for c in pieces).strip() == want != ""


def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(engine):
    bad = [
        ("{not json", None, None),
        (None, {"model": "gpt-4", "prompt": "hi"}, "model_not_found"),
        (None, {"model": "tiny-chat", "prompt": "hi", "max_tokens": -1}, None),
        (None, {"model": "tiny-chat", "prompt": "rose " * 70}, "context_length_exceeded"),
        (None, {"model": "tiny-chat", "prompt": "hi", "max_tokens": 64}, "context_length_exceeded"),
        (None, {"model": "tiny-chat", "prompt": "hi", "n": 2}, "unsupported_parameter"),
        (None, {"model": "tiny-chat", "prompt": "hi", "temperature": 3}, None),
        (None, {"model": "tiny-chat", "prompt": [99999]}, None),
        (None, {"model": "tiny-chat", "prompt": "hi", "stop": ["a", "b", "c", "d", "e"]}, None),
    ]

    async def send_all(client, app):
        out = []
        for raw, body, _ in bad:
            kwargs = {"content": raw, "headers": {"content-type": "application/json"}} if raw else {"json": body}
            out.append(await client.post("/v1/completions", **kwargs))
        for messages in ([{"role": "assistant", "content": "hi"}], [], [{"role": "robot", "content": "hi"}]):
            out.append(await client.post("/v1/chat/completions", json={"model": "tiny-chat", "messages": messages}))
        ok = await client.post("/v1/completions", json={"model": "tiny-chat", "prompt": "the", "max_tokens": 2})
        return out, ok

    replies, ok = with_client(engine, send_all)
    for k, reply in enumerate(replies):
        assert reply.status_code == 400, (k, reply.text)
        err = reply.json()["error"]
        assert err["type"] == "invalid_request_error" and err["message"], k
        if k < len(bad) and bad[k][2]:
            assert err["code"] == bad[k][2], (k, err)
    assert "not valid JSON" in replies[0].json()["error"]["message"]
    assert replies[2].json()["error"]["param"] == "max_tokens"
    assert "maximum context length is 64" in replies[3].json()["error"]["message"]
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 2


def test_a_failing_batch_is_a_500_and_the_next_one_is_served(engine):
    import dataclasses

    from finetune.serve.engine import Engine

    class FailsOnce(Engine):
        failed = False

        def run(self, jobs):
            if not FailsOnce.failed:
                FailsOnce.failed = True
                raise RuntimeError("out of memory")
            super().run(jobs)

    flaky = FailsOnce(**{f.name: getattr(engine, f.name) for f in dataclasses.fields(engine)})

    async def twice(client, app):
        body = {"model": "tiny-chat", "prompt": "the", "max_tokens": 2}
        return await client.post("/v1/completions", json=body), await client.post("/v1/completions", json=body)

    first, second = with_client(flaky, twice)
    assert first.status_code == 500 and first.json()["error"]["type"] == "server_error"
    assert "out of memory" in first.json()["error"]["message"]
    assert second.status_code == 200


def test_a_taken_port_is_one_line_naming_the_fix():
    from finetune.errors import UserError
    from finetune.serve import bind

    taken = bind("127.0.0.1", 0)
    taken.listen()
    try:
        with pytest.raises(UserError, match=r"cannot listen on 127.0.0.1:\d+ .*pass a free --port"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


# ---------------------------------------------------------------- the real server


def _start(model_dir: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), "serve", str(model_dir), "--port", "0", "--window-ms", "20"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()  # "serving NAME at http://127.0.0.1:PORT/v1 ..." once the model is loaded
    if not line.startswith("serving"):
        proc.kill()
        raise AssertionError(f"ft serve did not start: {line}{proc.stderr.read()}")
    base = line.split(" at ")[1].split()[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # ready when /v1/models answers
        try:
            if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("ft serve did not answer /v1/models within 60 s")


def test_ft_serve_answers_the_openai_client_like_ft_generate_and_stops_on_sigterm(model_dir, engine):
    import openai

    proc, base = _start(model_dir)
    try:
        assert base.startswith("http://127.0.0.1:")  # loopback by default
        client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list()] == ["tiny-chat"]

        chat = client.chat.completions.create(
            model="tiny-chat", messages=[{"role": "user", "content": "the market rose 3"}], temperature=0, max_tokens=8
        )
        assert chat.choices[0].message.content == generate_command(model_dir, "the market rose 3", 8, None) != ""

        text = client.completions.create(model="tiny-chat", prompt="Sentence 4", temperature=0, max_tokens=6)
        want = generate(engine.model, engine.tokenizer, ["Sentence 4"], max_new_tokens=6, progress=False)[0]
        assert text.choices[0].text.strip() == want != ""

        stream = client.chat.completions.create(
            model="tiny-chat",
            messages=[{"role": "user", "content": "the market rose 3"}],
            temperature=0,
            max_tokens=8,
            stream=True,
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream) == chat.choices[0].message.content

        for kwargs in ({"model": "nope"}, {"model": "tiny-chat", "max_tokens": -3}):
            with pytest.raises(openai.BadRequestError):
                client.completions.create(**{"prompt": "the", **kwargs})
        raw = httpx.post(f"{base}/chat/completions", content=b"{oops", headers={"content-type": "application/json"})
        assert raw.status_code == 400 and "error" in raw.json()

        prompts = [f"the market rose {i}" for i in range(16)]  # 16 clients at once, each answered as it is alone
        with ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(
                    lambda p: client.chat.completions.create(
                        model="tiny-chat", messages=[{"role": "user", "content": p}], temperature=0, max_tokens=8
                    ),
                    prompts,
                )
            )
        alone = generate(
            engine.model, engine.tokenizer, [engine.template.prompt({"input": p}) for p in prompts], max_new_tokens=8
        )
        assert [a.choices[0].message.content for a in answers] == alone  # what ft generate prints for each
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, proc.stderr.read()[-2000:]
