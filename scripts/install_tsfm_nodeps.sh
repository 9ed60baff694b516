#!/usr/bin/env bash
# Install the Moirai (uni2ts) and MOMENT (momentfm) model packages without
# their dependency pins, plus only the packages their model code imports.
#
#   bash scripts/install_tsfm_nodeps.sh [VENV_PYTHON]      (default .venv/bin/python)
#
# Why: uni2ts 2.0.0 pins torch<2.5, numpy~=1.26, scipy~=1.11, gluonts~=0.14;
# momentfm 0.1.4 pins transformers==4.33.3, numpy==1.25.2, huggingface-hub==0.24;
# gluonts 0.17.0 pins pandas<3. A plain `pip install` would replace torch
# (several GB of CUDA wheels), transformers and pandas and break the other
# families. Their model code runs on the current releases (docs/models.md).
# pip reports the broken pins afterwards ("uni2ts 2.0.0 requires torch<2.5 …");
# that message is expected and harmless for the code paths isofast uses.
#
# Idempotent: a package already installed at the pinned version is skipped;
# the script prints what it installed (or that nothing was needed). Needs
# network access to PyPI only when something is missing; everything is a
# pure-Python or manylinux wheel (nothing is compiled).
set -euo pipefail

PY="${1:-.venv/bin/python}"
if [ ! -x "$PY" ]; then
    echo "install_tsfm_nodeps: no Python at $PY (pass the venv's python as the first argument)" >&2
    exit 2
fi

# name==version pairs. The first group goes in with --no-deps; the second
# with its (compatible) dependencies. jax/jaxlib: jaxtyping's PyTree (used in
# uni2ts.distribution's annotations) imports jax.tree_util.
NODEPS=("uni2ts==2.0.0" "momentfm==0.1.4" "gluonts==0.17.0")
WITHDEPS=("lightning==2.6.6" "hydra-core==1.3.2" "jaxtyping==0.3.11" "jax==0.10.2" "jaxlib==0.10.2")

# The requirements not yet installed at their pinned version (no imports run).
missing() {
    "$PY" - "$@" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
for req in sys.argv[1:]:
    name, want = req.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        print(req)
EOF
}

pip_install() {
    if "$PY" -m pip --version >/dev/null 2>&1; then
        "$PY" -m pip install -q --disable-pip-version-check "$@"
    elif command -v uv >/dev/null 2>&1; then
        uv pip install -q --python "$PY" "$@"
    else
        echo "install_tsfm_nodeps: neither pip (in $PY) nor uv is available" >&2
        exit 2
    fi
}

installed=()
out="$(missing "${NODEPS[@]}")"
todo=()
[ -n "$out" ] && mapfile -t todo <<<"$out"
if [ "${#todo[@]}" -gt 0 ]; then
    echo "install_tsfm_nodeps: pip install --no-deps ${todo[*]}"
    pip_install --no-deps "${todo[@]}"
    installed+=("${todo[@]}")
fi
out="$(missing "${WITHDEPS[@]}")"
todo=()
[ -n "$out" ] && mapfile -t todo <<<"$out"
if [ "${#todo[@]}" -gt 0 ]; then
    echo "install_tsfm_nodeps: pip install ${todo[*]}"
    pip_install "${todo[@]}"
    installed+=("${todo[@]}")
fi

# The check: every pin is now present, and the model modules are findable.
out="$(missing "${NODEPS[@]}" "${WITHDEPS[@]}")"
if [ -n "$out" ]; then
    echo "install_tsfm_nodeps: still missing after install: $(echo $out)" >&2
    exit 1
fi
"$PY" - <<'EOF'
import importlib.util, sys
bad = [m for m in ("uni2ts", "momentfm", "gluonts", "lightning", "hydra", "jaxtyping", "jax")
       if importlib.util.find_spec(m) is None]
if bad:
    sys.exit(f"install_tsfm_nodeps: not importable: {bad}")
EOF

if [ "${#installed[@]}" -gt 0 ]; then
    echo "install_tsfm_nodeps: installed ${installed[*]}"
else
    echo "install_tsfm_nodeps: nothing to do (uni2ts 2.0.0, momentfm 0.1.4, gluonts 0.17.0, lightning, hydra-core, jaxtyping, jax already installed)"
fi
