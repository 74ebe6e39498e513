# brainclust: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install demo test test-fast bench bench-scale ablation clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/brainclust demo --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest -q

# the fast subset for development: everything but the end-to-end runs marked slow
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# Extraction side by side (torch / ONNX Runtime / OpenVINO x fp32 / bf16 / int8, network only and end to end,
# with the fp32 roof), then the agreement of each faster path with fp32 on every local set (docs/performance.md).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_extract.py --n 160 --n-large 64 --repeats 3 --out benchmarks/results/extract.md
	$(BIN)/python benchmarks/precision_agreement.py --out benchmarks/results/precision_agreement.md

# Clustering at scale: time and peak RSS per stage (docs/performance.md "Scale"); add --n 1000000 for 1M.
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/bench_scale.py --n 10000 100000

# Self-supervised ablation: 6 configurations x 3 data sets x 2 methods x 5 seeds (README "Results").
# The table in docs/results.md used bf16 features: `make ablation PRECISION=bf16` (a CPU with native bf16).
PRECISION ?= auto
ablation: $(STAMP)
	$(BIN)/brainclust ablation --out ablation_out --data-root ../shared/data --seeds 5 --precision $(PRECISION)

clean:
	rm -rf demo_out build dist src/*.egg-info .pytest_cache
