"""bench.real_speed on a tiny Llama folder, in process: every contender trains the same adapter on the same
examples, ft and the bare loop time the same tokens, and the results add up to the ratios and files written."""

from __future__ import annotations

import json

import pytest
import torch

from bench import real_speed


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real-speed")
    cfg = real_speed.settings(batch=2, warmup=1, steps=2, reps=1, threads=1, tiny=True)
    model = real_speed.tiny_model(tmp / "tiny")
    threads = torch.get_num_threads()
    out = real_speed.run(cfg, model, list(real_speed.NAMES), tmp / "out", tiny=True, isolate=False, log=lambda _: 0)
    torch.set_num_threads(threads)
    return tmp / "out", out


def test_every_contender_trains_the_same_adapter_on_the_same_work(result):
    _, out = result
    runs = {r["contender"]: r for r in out["runs"]}
    assert set(runs) == set(real_speed.NAMES) and not any("error" in r for r in runs.values()), runs
    assert len({r["extra"]["trainable_params"] for r in runs.values()}) == 1  # LoRA r 16 all-linear everywhere
    assert all(r["steps"] == 2 and r["tokens_per_s"] > 0 for r in runs.values())
    ours, bare = runs[real_speed.OURS], runs[real_speed.BARE]
    assert ours["tokens"] == bare["tokens"]  # the same batch plan
    data = out["data"]
    assert data["examples"] == 2 * (1 + 2 + 1) and 1 <= data["answer_tokens"][0] <= data["answer_tokens"][1] <= 5


def test_comparison_and_files_agree(result):
    folder, out = result
    summary, comparison = out["summary"], out["comparison"]
    best = max(real_speed.TRL, key=lambda n: summary[n]["tokens_per_s"])
    assert comparison["trl_best"] == best
    ratio = summary[real_speed.OURS]["tokens_per_s"] / summary[best]["tokens_per_s"]
    assert comparison["speed"][best] == pytest.approx(ratio, rel=1e-2)
    targets = {t["target"]: t for t in comparison["targets"]}
    assert len(targets) == 6 and all(t["met"] == (t["ratio"] >= 3.0) for k, t in targets.items() if "TRL's best" in k)
    lean = summary[real_speed.CHECKPOINTED]["peak_rss_mb"] / summary[best]["peak_rss_mb"]
    assert targets["ft + gradient checkpointing peak RSS <= 0.6x TRL's"]["ratio"] == pytest.approx(lean, rel=1e-2)
    saved = json.loads(next(folder.glob("real-speed-tiny-*.json")).read_text())
    assert saved["comparison"] == comparison and saved["gemm"]["ceiling"] > 0
    text = next(folder.glob("real-speed-tiny-*.md")).read_text()
    assert "| ft >= 1.5x the full-logits loop |" in text and "load average" in text


def test_a_folder_without_config_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        real_speed.parse(["--model-dir", str(tmp_path)])
    assert stop.value.code == 2 and "has no config.json" in capsys.readouterr().err
