"""The benchmark harness in smoke mode: every contender runs on a tiny model, and the numbers add up.

TRL contenders run when trl is installed and are reported as skipped otherwise.
"""

import importlib.util
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from bench import report
from bench.assets import build
from bench.config import preset
from bench.contenders import CONTENDERS, available, select
from bench.measure import StepClock
from bench.runner import REPO, alternate, child_env, run_benchmark


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    result = run_benchmark(preset("smoke"), list(CONTENDERS), out, work=out / "work", isolate=False, log=lambda _: None)
    assert torch.get_num_threads() == threads  # in-process runs leave the caller's thread count alone
    return out, result


def test_every_contender_runs_or_is_skipped_for_a_missing_package(smoke):
    _, result = smoke
    has_trl = importlib.util.find_spec("trl") is not None
    for name, contender in CONTENDERS.items():
        if contender.needs == "trl" and not has_trl:
            assert "trl" in result["skipped"][name]
            continue
        stats = result["summary"][name]
        assert stats["runs"] == 1, (name, stats.get("errors"))
        assert stats["tokens_per_s"] > 0 and stats["peak_rss_mb"] > 0 and 0 < stats["mfu"] < 1


def test_same_batch_plan_means_same_timed_tokens(smoke):
    """Ours and the bare loop see the same micro-batches in the same order, so their timed windows hold the same tokens."""
    runs = {r["contender"]: r for r in smoke[1]["runs"]}
    for batching in ("grouped", "packed"):
        ours, bare = runs[f"ours_lora_{batching}"], runs[f"bare_lora_{batching}"]
        assert ours["tokens"] == bare["tokens"] > 0 and ours["steps"] == bare["steps"]
    assert runs["ours_pretrain"]["tokens"] == runs["bare_pretrain"]["tokens"]
    assert runs["ours_lora_grouped"]["extra"]["skipped_steps"] == 0


def test_batched_generation_writes_what_one_by_one_writes(smoke):
    runs = {r["contender"]: r for r in smoke[1]["runs"]}
    assert runs["ours_generate"]["extra"]["outputs_sha"] == runs["hf_generate_one_by_one"]["extra"]["outputs_sha"]


def test_ratios_targets_and_files_agree(smoke):
    out, result = smoke
    summary = result["summary"]
    full = result["ratios"]["ours_full"]["hf_trainer_full"]
    assert full == pytest.approx(
        summary["ours_full"]["tokens_per_s"] / summary["hf_trainer_full"]["tokens_per_s"], rel=1e-2
    )
    gen = next(t for t in result["targets"] if t["target"].startswith("generation"))
    assert gen["met"] == (gen["ratio"] >= 4.0)
    stem = out / result["date"][:10]
    assert json.loads(stem.with_suffix(".json").read_text())["summary"] == json.loads(json.dumps(summary))
    md = stem.with_suffix(".md").read_text()
    for name in result["summary"]:
        assert CONTENDERS[name].label in md


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(2, 3)

    def forward(self, input_ids):
        return self.head(torch.ones(*input_ids.shape, 2))


def test_step_clock_counts_non_padding_tokens_between_warmup_and_last_step():
    model = Toy()
    clock = StepClock(model, pad_id=0)
    for ids in ([[5, 0, 0]], [[1, 2, 0]], [[3, 3, 3]], [[4, 0, 0]]):  # non-padding: 1, 2, 3, 1
        model(input_ids=torch.tensor(ids))
    with torch.no_grad():
        model(input_ids=torch.tensor([[9, 9]]))  # evaluation: not a training step
    out = clock.result(model, warmup=1)
    assert out["tokens"] == 2 + 3 and out["steps"] == 2 and out["matmul_params"] == 6
    model(input_ids=torch.tensor([[7]]))  # result() removed the hook
    assert len(clock.times) == 4
    with pytest.raises(RuntimeError, match="needs at least"):
        StepClock(model, 0).result(model, warmup=1)


def test_a_contender_in_its_own_process_reports_its_own_memory(smoke, tmp_path):
    out, _ = smoke
    cfg = preset("smoke")
    assets = build(cfg, out / "work")  # already built by the fixture
    result = tmp_path / "run.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.child", "ours_generate", "0", cfg.to_json(), str(assets.folder), str(result)],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(result.read_text())
    assert record["contender"] == "ours_generate" and record["tokens"] > 0
    assert record["peak_rss_mb"] >= record["setup_rss_mb"] > 0


def test_alternation_rotates_and_reverses():
    names = ["a", "b", "c"]
    orders = [alternate(names, rep) for rep in range(3)]
    assert orders == [["a", "b", "c"], ["a", "c", "b"], ["c", "a", "b"]]
    assert len({o[0] for o in orders}) == 2 and all(sorted(o) == names for o in orders)


def test_select_by_name_group_and_prefix():
    assert select("full") == ["ours_full", "hf_trainer_full"]
    assert select("trl_packed") == ["trl_packed_bfd", "trl_packed_wrapped"]
    assert select("ours_generate,pretrain") == ["ours_generate", "ours_pretrain", "bare_pretrain"]
    with pytest.raises(ValueError, match="matches no contender"):
        select("tlr")
    with pytest.raises(ValueError, match="unknown contender"):
        available(["nope"])


def test_memory_decides_a_target_even_when_speed_is_met():
    summary = {
        "ours_full": {"runs": 3, "tokens_per_s": 200.0, "peak_rss_mb": 900.0},
        "hf_trainer_full": {"runs": 3, "tokens_per_s": 100.0, "peak_rss_mb": 800.0},
    }
    full = next(t for t in report.targets(summary) if t["ours"] == "ours_full")
    assert full["ratio"] == 2.0 and full["memory_ok"] is False and full["met"] is False
    missing = next(t for t in report.targets(summary) if t["target"].startswith("pretraining"))
    assert missing["met"] is None and missing["note"] == "not run"
