"""How long the train/test overlap check takes: `python -m bench.overlap [TRAIN_ROWS] [TEST_ROWS]`.

Synthetic rows of 40 words (30-word input, 10-word output) from a 5,000-word vocabulary, 7 test rows
planted in the training rows; prints wall and CPU seconds with the load average, so a number from a
shared machine can be read for what it is.
"""

from __future__ import annotations

import os
import random
import sys
import time


def rows(rng: random.Random, n: int, vocab: list[str]) -> list[dict[str, str]]:
    return [
        {"input": " ".join(rng.choices(vocab, k=30)), "output": " ".join(rng.choices(vocab, k=10))} for _ in range(n)
    ]


def main(train_rows: int = 100_000, test_rows: int = 10_000) -> dict[str, float]:
    from finetune.data.overlap import check

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(5000)]
    train, test = rows(rng, train_rows, vocab), rows(rng, test_rows, vocab)
    train += [dict(r) for r in test[:7]]
    wall, cpu = time.perf_counter(), time.process_time()
    result = check([("train", train)], [("test", test)])
    out = {
        "train_rows": len(train),
        "test_rows": len(test),
        "overlapping": result["tests"][0]["overlapping"],
        "wall_s": round(time.perf_counter() - wall, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "load_1min": os.getloadavg()[0],
    }
    assert out["overlapping"] == 7, out
    return out


if __name__ == "__main__":
    print(main(*(int(a) for a in sys.argv[1:3])))
