"""Out-of-core file sources (isofast.sources, isofast.readahead) against the
in-memory result, damaged files, and the ``isofast analyze`` CLI on them."""

from __future__ import annotations

import io
import json
import os
import threading

import numpy as np
import pytest

import isofast
from isofast.readahead import BufferPool, CorruptFileError, TruncatedFileError, prefetch
from isofast.sources import open_source

FIELDS = (
    "isoscore",
    "participation_ratio",
    "avg_cosine",
    "avg_cosine_centered",
    "log_partition_isotropy",
    "log_partition_isotropy_centered",
)

# Small tiles so every source is read in many tiles (and across shards).
TILE = 4096


def same(a, b, rel=1e-12):
    """Equal up to float64 rounding of a different chunking."""
    assert a.n == b.n and a.dim == b.dim
    np.testing.assert_allclose(a.eigenvalues, b.eigenvalues, rtol=rel, atol=rel * b.eigenvalues[0])
    np.testing.assert_allclose(a.mean, b.mean, rtol=rel, atol=rel * np.abs(b.mean).max())
    for k in FIELDS:
        # Cosines near 0 come from a cancellation (‖Σx̂‖² − N); compare them
        # on the scale of their terms.
        assert getattr(a, k) == pytest.approx(getattr(b, k), rel=rel, abs=rel), k


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(7)
    return (rng.standard_normal((1500, 24)) * np.linspace(3, 0.3, 24) + 0.7).astype(np.float32)


@pytest.fixture(scope="module")
def base(X):
    return isofast.analyze(X)


# ------------------------------------------------------------------ .npy
def test_npy_tiles_equal_in_memory(tmp_path, X, base):
    p = tmp_path / "x.npy"
    np.save(p, X)
    src = open_source(p, tile_bytes=TILE)
    assert src.shape == X.shape and src.isofast_dtype == "float32"
    assert src.tile_rows * X.shape[1] * 4 <= TILE
    same(isofast.analyze(src), base)
    # re-iterable: a second full read gives the same rows
    np.testing.assert_array_equal(src.to_numpy(), X)


@pytest.mark.parametrize("layout", ["fortran", "bigendian", "float16", "fortran-bigendian-f64"])
def test_npy_layouts_and_dtypes(tmp_path, X, layout):
    arr = {
        "fortran": np.asfortranarray(X),
        "bigendian": X.astype(">f4"),
        "float16": X.astype(np.float16),
        "fortran-bigendian-f64": np.asfortranarray(X.astype(">f8")),
    }[layout]
    p = tmp_path / "x.npy"
    np.save(p, arr)
    src = open_source(p, tile_bytes=TILE, rows=slice(17, 1400))
    np.testing.assert_array_equal(src.to_numpy(), arr[17:1400])
    same(isofast.analyze(src), isofast.analyze(np.ascontiguousarray(arr[17:1400])))


def test_npy_3d_layer_and_rows(tmp_path, X):
    stack = np.stack([X, 2 * X + 1, -X])
    p = tmp_path / "layers.npy"
    np.save(p, stack)
    src = open_source(p, layer=1, rows=slice(100, None), tile_bytes=TILE)
    np.testing.assert_array_equal(src.to_numpy(), stack[1, 100:])
    np.testing.assert_array_equal(open_source(p, layer=-1).to_numpy(), stack[2])
    with pytest.raises(ValueError, match="choose a layer"):
        open_source(p)
    with pytest.raises(ValueError, match="out of range"):
        open_source(p, layer=3)


def test_as_array_maps_single_files(tmp_path, X):
    np.save(tmp_path / "c.npy", X)
    np.save(tmp_path / "f.npy", np.asfortranarray(X))
    for name in ("c.npy", "f.npy"):
        a = open_source(tmp_path / name, rows=slice(5, 900)).as_array()
        assert isinstance(a, np.memmap)
        np.testing.assert_array_equal(a, X[5:900])


def test_kept_tiles_are_not_overwritten(tmp_path, X):
    """Reusable buffers must never recycle a tile the consumer still holds."""
    p = tmp_path / "x.npy"
    np.save(p, X)
    tiles = list(open_source(p, tile_bytes=TILE).iter_chunks())
    assert len(tiles) > 10
    np.testing.assert_array_equal(np.concatenate(tiles), X)


def test_buffer_pool_reuses_only_released_buffers():
    pool = BufferPool(2)
    a = pool.get(100)
    view = a[:10]
    del a
    b = pool.get(100)
    assert not np.shares_memory(b, view)  # the view keeps the first buffer busy
    del view, b
    c = pool.get(50)
    d = pool.get(50)
    assert not np.shares_memory(c, d)


def _vm_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
def test_resident_memory_stays_bounded(tmp_path):
    """A 96 MiB file read in 2 MiB tiles never adds more than a few tiles of RSS
    (a memory map of the file would add all 96 MiB)."""
    n, d = 32768, 768
    p = tmp_path / "big.npy"
    with open(p, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, d)})
        block = np.ones((4096, d), np.float32)
        for _ in range(n // 4096):
            f.write(block.tobytes())
    src = open_source(p, tile_bytes=2 << 20, drop_cache=True)
    before = _vm_rss()
    peak = before
    rows = 0
    for tile in src.iter_chunks():
        rows += tile.shape[0]
        peak = max(peak, _vm_rss())
    assert rows == n
    assert peak - before < 24 << 20, f"RSS grew by {(peak - before) / 2**20:.1f} MiB"


def test_prefetch_propagates_errors_and_stops_early():
    def produce():
        yield 1
        yield 2
        raise RuntimeError("boom at 3")

    it = prefetch(produce, depth=2)
    assert next(it) == 1 and next(it) == 2
    with pytest.raises(RuntimeError, match="boom at 3"):
        next(it)

    started = threading.active_count()
    gen = prefetch(lambda: iter(range(10**9)), depth=2)
    assert next(gen) == 0
    gen.close()  # early stop joins the reader thread
    assert threading.active_count() == started


# ------------------------------------------------------------------ shard folders
def test_plain_shard_folder_in_name_order(tmp_path, X, base):
    cuts = [0, 100, 101, 700, 1500]
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        np.save(tmp_path / f"part-{i:02d}.npy", X[a:b])
    (tmp_path / "README.txt").write_text("not a shard")
    src = open_source(tmp_path, tile_bytes=TILE)
    assert src.shape == X.shape and len(src.paths) == 4
    same(isofast.analyze(src), base)
    # a row range crossing shard boundaries
    np.testing.assert_array_equal(open_source(tmp_path, rows=slice(50, 750)).to_numpy(), X[50:750])


def test_shard_mismatch_names_the_shard(tmp_path, X):
    np.save(tmp_path / "a.npy", X[:10])
    np.save(tmp_path / "b.npy", X[:10, :20])
    with pytest.raises(ValueError, match=r"shard .*b\.npy has d=20"):
        open_source(tmp_path)
    (tmp_path / "b.npy").unlink()
    np.save(tmp_path / "c.npy", X[:10].astype(np.float64))
    with pytest.raises(ValueError, match=r"shard .*c\.npy has dtype float64"):
        open_source(tmp_path)


def _write_capture(root, arrays, dtype="float32"):
    from isofast.store import TOKEN_COLUMNS, WINDOW_COLUMNS, CaptureWriter

    w = CaptureWriter.prepare(
        root,
        {
            "format": "isofast-capture",
            "format_version": 1,
            "complete": True,
            "model": {"name": "synthetic", "num_layers": 2},
            "dtype": dtype,
            "sites": ["residual"],
            "layers": {"residual": [1]},
            "dim": arrays[0].shape[1],
            "shards": [],
            "token_table_format": "csv",
        },
    )
    row = 0
    for k, a in enumerate(arrays):
        n = a.shape[0]
        tokens = {c: np.zeros(n, np.int64) for c in TOKEN_COLUMNS}
        tokens["row"] = np.arange(row, row + n)
        tokens["token_text"] = np.array(["x"] * n, dtype=object)
        tokens["role"] = np.array(["digit"] * n, dtype=object)
        windows = {c: np.zeros(1) for c in WINDOW_COLUMNS}
        w.write_shard(k, {("residual", 1): a}, tokens, windows, window_range=(k, k + 1))
        row += n


def test_capture_folder(tmp_path, X, base):
    _write_capture(tmp_path / "cap", [X[:600], X[600:1100], X[1100:]])
    src = open_source(tmp_path / "cap", layer=1, tile_bytes=TILE)
    assert src.shape == X.shape
    same(isofast.analyze(src), base)
    with pytest.raises(ValueError, match="choose one with"):
        open_source(tmp_path / "cap")
    np.testing.assert_array_equal(open_source(tmp_path / "cap", layer=1, rows=slice(590, 610)).to_numpy(), X[590:610])


def test_capture_bfloat16_shards(tmp_path, X):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf = X.astype(ml_dtypes.bfloat16)
    _write_capture(tmp_path / "cap", [bf[:700].view(np.uint16), bf[700:].view(np.uint16)], dtype="bfloat16")
    src = open_source(tmp_path / "cap", layer=1, tile_bytes=TILE)
    assert src.isofast_dtype == "bfloat16" and src.dtype == np.uint16
    same(isofast.analyze(src), isofast.analyze(bf))


def test_capture_shard_with_wrong_dim_is_named(tmp_path, X):
    _write_capture(tmp_path / "cap", [X[:600], X[600:]])
    shard = tmp_path / "cap" / "residual" / "L001" / "00001.npy"
    np.save(shard, X[600:, :10])
    # the overwritten shard no longer matches the checksum the capture recorded
    from isofast.errors import ChecksumError

    with pytest.raises(ChecksumError, match=r"00001\.npy"):
        open_source(tmp_path / "cap", layer=1)
    # with its checksum re-recorded (a consistent but wrong capture) the
    # shape check still names the shard
    from isofast import store

    m = store.read_manifest(tmp_path / "cap")
    m["shards"][1]["checksums"]["residual/L001/00001.npy"] = store.checksum_of(shard)
    store.CaptureWriter(tmp_path / "cap", m).write_manifest()
    with pytest.raises(ValueError, match=r"shard .*00001\.npy has d=10"):
        open_source(tmp_path / "cap", layer=1)


# ------------------------------------------------------------------ safetensors
def test_safetensors_float32_and_native_bfloat16(tmp_path, X, base):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    st = pytest.importorskip("safetensors.numpy")
    bf = X.astype(ml_dtypes.bfloat16)
    p = tmp_path / "emb.safetensors"
    st.save_file({"hidden": X, "hidden_bf16": bf, "extra": np.zeros(3, np.float32)}, str(p))
    with pytest.raises(ValueError, match="choose one"):
        open_source(p)
    src = open_source(p, key="hidden", tile_bytes=TILE)
    same(isofast.analyze(src), base)
    sb = open_source(p, key="hidden_bf16", tile_bytes=TILE)
    assert sb.isofast_dtype == "bfloat16" and sb.dtype == np.uint16
    np.testing.assert_array_equal(sb.to_numpy(), bf.view(np.uint16))
    same(isofast.analyze(sb), isofast.analyze(bf))
    with pytest.raises(KeyError, match="nope"):
        open_source(p, key="nope")


def _safetensors_bytes(header: dict, payload: bytes) -> bytes:
    h = json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + payload


def test_safetensors_truncated_and_corrupt(tmp_path, X):
    data = X[:100].tobytes()
    good = _safetensors_bytes({"t": {"dtype": "F32", "shape": [100, 24], "data_offsets": [0, len(data)]}}, data)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good[:-1000])
    with pytest.raises(TruncatedFileError) as ei:
        open_source(cut)
    assert isinstance(ei.value, OSError) and ei.value.filename == str(cut)
    assert ei.value.offset == len(good) - 1000 and str(len(good) - 1000) in str(ei.value)

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!!!" + data)
    with pytest.raises(CorruptFileError, match=r"junk\.safetensors.*not valid JSON.*offset 8"):
        open_source(junk)

    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((2**60).to_bytes(8, "little") + b"{}")
    with pytest.raises(CorruptFileError, match="offset 0"):
        open_source(huge)

    lying = tmp_path / "lying.safetensors"
    lying.write_bytes(_safetensors_bytes({"t": {"dtype": "F32", "shape": [100, 24], "data_offsets": [0, 40]}}, data))
    with pytest.raises(CorruptFileError, match="does not match its byte range"):
        open_source(lying)


# ------------------------------------------------------------------ damaged .npy
def test_npy_truncated_names_file_and_offset(tmp_path, X):
    p = tmp_path / "x.npy"
    np.save(p, X)
    size = p.stat().st_size
    with open(p, "r+b") as f:
        f.truncate(size - 1000)
    with pytest.raises(TruncatedFileError) as ei:
        open_source(p)
    e = ei.value
    assert isinstance(e, OSError) and e.filename == str(p) and e.offset == size - 1000
    assert str(p) in str(e) and f"offset {size - 1000}" in str(e) and "rows complete" in str(e)


def test_npy_truncated_while_open(tmp_path, X):
    """A file that shrinks after opening fails at the read, naming the offset."""
    p = tmp_path / "x.npy"
    np.save(p, X)
    src = open_source(p, tile_bytes=TILE)
    size = p.stat().st_size
    with open(p, "r+b") as f:
        f.truncate(size - 5000)
    with pytest.raises(TruncatedFileError, match=rf"x\.npy: file ends early.*offset {size - 5000}"):
        isofast.analyze(src)


def test_npy_corrupt_header(tmp_path):
    p = tmp_path / "bad.npy"
    p.write_bytes(b"this is not numpy")
    with pytest.raises(CorruptFileError, match=r"bad\.npy: not a \.npy file.*offset 0"):
        open_source(p)
    q = tmp_path / "badhdr.npy"
    q.write_bytes(b"\x93NUMPY\x01\x00" + (20).to_bytes(2, "little") + b"{'descr': garbage}\n")
    with pytest.raises(CorruptFileError, match=r"unreadable \.npy header.*offset 8"):
        open_source(q)


def test_npy_format_versions(tmp_path, X):
    for v in ((2, 0), (3, 0)):
        p = tmp_path / f"v{v[0]}.npy"
        with open(p, "wb") as f:
            np.lib.format.write_array(f, X, version=v)
        np.testing.assert_array_equal(open_source(p, tile_bytes=TILE).to_numpy(), X)
    raw = bytearray((tmp_path / "v2.npy").read_bytes())
    raw[6] = 9  # major version byte
    (tmp_path / "v9.npy").write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match=r"unsupported \.npy format version 9\.0.*offset 6"):
        open_source(tmp_path / "v9.npy")


# ------------------------------------------------------------------ zarr
def test_zarr_array_and_group(tmp_path, X, base):
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(store=str(tmp_path / "a.zarr"), shape=X.shape, chunks=(128, 24), dtype="float32")
    z[:] = X
    src = open_source(tmp_path / "a.zarr", tile_bytes=TILE)
    assert src.chunk_rows == 128
    same(isofast.analyze(src), base)
    np.testing.assert_array_equal(open_source(tmp_path / "a.zarr", rows=slice(130, 1000)).to_numpy(), X[130:1000])

    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("emb", shape=X.shape, chunks=(500, 24), dtype="float64")[:] = X
    g.create_array("other", shape=(3,), dtype="float64")
    with pytest.raises(ValueError, match="choose one"):
        open_source(tmp_path / "g.zarr")
    same(isofast.analyze(open_source(tmp_path / "g.zarr", key="emb")), isofast.analyze(X.astype(np.float64)))


# ------------------------------------------------------------------ parquet
def test_parquet_fixed_size_list(tmp_path, X, base):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    col = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1])
    pq.write_table(pa.table({"id": np.arange(len(X)), "emb": col}), tmp_path / "e.parquet", row_group_size=400)
    src = open_source(tmp_path / "e.parquet", tile_bytes=TILE)
    assert src.column == "emb" and src.shape == X.shape
    same(isofast.analyze(src), base)
    np.testing.assert_array_equal(open_source(tmp_path / "e.parquet", rows=slice(390, 1210)).to_numpy(), X[390:1210])


def test_parquet_list_column_folder_and_nulls(tmp_path, X, base):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    folder = tmp_path / "parts"
    folder.mkdir()
    for i, (a, b) in enumerate([(0, 700), (700, 1500)]):
        lists = pa.ListArray.from_arrays(
            pa.array(np.arange(0, (b - a + 1) * 24, 24, dtype=np.int32)), pa.array(X[a:b].ravel())
        )
        pq.write_table(pa.table({"v": lists}), folder / f"{i}.parquet", row_group_size=300)
    same(isofast.analyze(open_source(folder, tile_bytes=TILE)), base)

    col = pa.FixedSizeListArray.from_arrays(pa.array(X[:10].ravel()), 24)
    mask = np.zeros(10, bool)
    mask[6] = True
    with_null = pa.FixedSizeListArray.from_arrays(pa.array(X[:10].ravel()), 24, mask=pa.array(mask))
    pq.write_table(pa.table({"emb": with_null, "ok": col}), tmp_path / "n.parquet")
    with pytest.raises(ValueError, match="cannot tell the embedding column"):
        open_source(tmp_path / "n.parquet")
    with pytest.raises(ValueError, match="row 6 of column 'emb' is null"):
        isofast.analyze(open_source(tmp_path / "n.parquet", key="emb"))


# ------------------------------------------------------------------ CLI
def test_cli_progress_rows_layer_and_quiet(tmp_path, X, capsys):
    from isofast.cli import main

    stack = np.stack([X, 3 * X])
    p = tmp_path / "layers.npy"
    np.save(p, stack)
    assert main(["analyze", str(p), "--layer", "1", "--rows", "100:1200", "--json", "--tile-mb", "0.01"]) == 0
    out = capsys.readouterr()
    got = json.loads(out.out)
    want = isofast.analyze(stack[1, 100:1200])
    assert got["n"] == 1100
    assert got["isoscore"] == pytest.approx(want.isoscore, rel=1e-12)
    assert got["log_partition_isotropy"] == pytest.approx(want.log_partition_isotropy, rel=1e-12)
    assert "2,200 rows" in out.err and "rows/s" in out.err and "MB/s" in out.err

    assert main(["analyze", str(p), "--layer", "0", "--quiet"]) == 0
    out = capsys.readouterr()
    assert out.err == "" and "isoscore" in out.out

    assert main(["analyze", str(p), "--layer", "0", "--rows", "12"]) == 2
    assert "--rows expects A:B" in capsys.readouterr().err


def test_cli_truncated_file_is_a_clean_error(tmp_path, X, capsys):
    from isofast.cli import main

    p = tmp_path / "x.npy"
    np.save(p, X)
    with open(p, "r+b") as f:
        f.truncate(1000)
    assert main(["analyze", str(p)]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and "offset 1000" in err


def test_progress_line_has_eta(X):
    from isofast.progress import SourceProgress

    buf = io.StringIO()
    prog = SourceProgress(X, passes=2, stream=buf, every=0.0)
    rep = isofast.analyze(prog)
    prog.finish()
    lines = buf.getvalue().splitlines()
    assert rep.n == len(X)
    assert any("ETA" in ln and "pass 2/2" in ln for ln in lines)
    assert lines[-1].startswith("isofast analyze: read 3,000 rows")
