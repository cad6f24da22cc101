"""Throughput and memory benchmarks of ``ft`` against TRL, the HF Trainer and a bare PyTorch loop.

    python -m bench [--quick] [--reps N] [--only NAME] [--scale] [--profile]

Every contender trains the same tiny Llama-architecture model on the same
tokenized examples, in its own process (so peak RSS is its own), alternating
with the others across repetitions (so a busy neighbour slows everyone alike).
Results go to ``bench/results/<date>.json`` and ``.md``. TRL is a bench-only
extra: it is imported here and nowhere in ``finetune``.
"""
