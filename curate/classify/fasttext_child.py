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
the last line of stdout is a JSON object {"ok": true, "words": n, "labels": [...]} (exit 0) or
{"ok": false, "error": "..."} (exit 1). A child that dies without a report (a signal, the OOM
killer) is described by the parent from its exit status and the end of its stderr.

`CURATE_FASTTEXT_FAULT` makes the child fail on purpose, so the parent's reporting can be checked
(as the `fault_inject` stage does for workers): `error` raises inside training (reported, exit 1),
`exit` leaves with status 3 before reporting, `abort` dies of SIGABRT.
"""
from __future__ import annotations

import json
import os
import sys

FAULT_ENV = "CURATE_FASTTEXT_FAULT"


def _inject_fault() -> None:
    fault = os.environ.get(FAULT_ENV, "")
    if fault == "error":
        raise RuntimeError(f"fault injected by {FAULT_ENV}=error")
    if fault == "exit":
        print(f"leaving with status 3 ({FAULT_ENV}=exit)", file=sys.stderr, flush=True)
        os._exit(3)
    if fault == "abort":
        print(f"aborting ({FAULT_ENV}=abort)", file=sys.stderr, flush=True)
        os.abort()


def main() -> int:
    job = json.loads(sys.argv[1])
    try:
        _inject_fault()
        import fasttext

        if hasattr(fasttext, "FastText") and hasattr(fasttext.FastText, "eprint"):
            fasttext.FastText.eprint = lambda *_: None
        model = fasttext.train_supervised(input=job["input"], verbose=0, **job["params"])
        model.save_model(job["output"])
        result = {"ok": True, "words": len(model.words), "labels": list(model.labels)}
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises a clear error
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
