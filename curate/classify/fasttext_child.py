"""Train one fastText supervised model in a fresh process: `python -m curate.classify.fasttext_child`.

Why a child process: fasttext-numpy2-wheel 0.9.2 (the only fastText build with training that loads
under numpy 2) does not train reproducibly more than twice in one process. Measured here on 674
real lines (WikiText vs web chunks), `thread=1`, `seed=0`: the first two models of a process are
identical, every later one differs, and some diverge to `Encountered NaN` (the "random NaN" the
shared data README reports). The first model trained in a fresh process is the same every time
(checked over 5 processes, with and without other allocations and trainings before it). So each
model is trained by a new interpreter that imports nothing but fastText, and the NaN retry also
starts afresh.

Protocol: argv[1] is a JSON object {"input": train file, "output": model path, "params": {...}};
the last line of stdout is a JSON object {"ok": true, "words": n, "labels": [...]} or
{"ok": false, "error": "..."}.
"""
from __future__ import annotations

import json
import sys


def main() -> int:
    job = json.loads(sys.argv[1])
    try:
        import fasttext

        if hasattr(fasttext, "FastText") and hasattr(fasttext.FastText, "eprint"):
            fasttext.FastText.eprint = lambda *_: None
        model = fasttext.train_supervised(input=job["input"], verbose=0, **job["params"])
        model.save_model(job["output"])
        result = {"ok": True, "words": len(model.words), "labels": list(model.labels)}
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises a clear error
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
