"""Test session isolation: caches go to a temporary folder, nothing reaches the network."""

import os
import tempfile

_tmp = tempfile.mkdtemp(prefix="ft-tests-")
os.environ["HF_HOME"] = os.path.join(_tmp, "hf")
os.environ["FT_CACHE"] = os.path.join(_tmp, "ft")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests use tiny models: one thread does their small matrix products as fast as two, and two threads
# per process oversubscribe the cores (16x slower generation measured under load). Set before torch
# is imported; processes a test starts inherit it (`ft run --processes N` sets its children's own).
os.environ.setdefault("OMP_NUM_THREADS", "1")


# Modules whose tests start processes or train end to end (each test seconds to a minute): the `slow`
# marker lets `pytest -m "not slow"` be the quick loop, while the README's command still runs everything.
SLOW_MODULES = {
    "test_preference_run.py",
    "test_distributed.py",
    "test_reliability_resume.py",
    "test_precision_and_trackers.py",
    "test_bench_smoke.py",
    "test_install.py",
    "test_pipeline.py",
    "test_cli.py",
    "test_reliability_checkpoint.py",
    "test_reliability_runs.py",
    "test_reliability_fingerprint.py",
    "test_data_splits_run.py",
    "test_code_health.py",
    "test_light_commands.py",
    "test_real_speed.py",
}
# single tests elsewhere that start a fresh interpreter (seconds of imports each)
SLOW_TESTS = {
    "test_ft_eval_bad_field_is_one_line_exit_2",
    "test_adapter_loads_with_plain_peft_in_fresh_process",
    "test_ft_serve_answers_the_openai_client_like_ft_generate_and_stops_on_sigterm",
    "test_mixed_run_is_identical_after_kill_and_resume",
}


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if item.path.name in SLOW_MODULES or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
