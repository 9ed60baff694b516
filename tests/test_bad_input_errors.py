"""Issue 17, class 4: clear errors.

Damaged files are ``OSError`` subclasses naming the file (and the offset),
through the Python API, the file sources and the CLI (one line, no
traceback; ``--debug`` shows it). Header shapes that no file can hold are
refused. DataFrames are read by column. A NaN inside ``--rows A:B`` is
numbered in the file. ``capture --device cuda`` without a GPU is one line.
"""

from __future__ import annotations

import json

import isofast
import numpy as np
import pytest
from _bad_input import assert_one_line_error, cli
from isofast.errors import (
    ArgumentTypeError,
    CorruptFileError,
    DataFormatError,
    IsofastError,
    NonFiniteError,
    TruncatedFileError,
    UnknownDatasetError,
)


# ------------------------------------------------------------------ damaged files
def _npy(tmp_path, name="x.npy", shape=(50, 4)):
    p = tmp_path / name
    np.save(p, np.random.default_rng(0).normal(size=shape))
    return p


def _cut_header(p):
    b = p.read_bytes()
    p.write_bytes(b[:40])  # inside the header dict: a tokenize error in numpy


def _npy_shape(shape_text):
    def make(p):
        b = p.read_bytes()
        hlen = int.from_bytes(b[8:10], "little")
        head = b[10 : 10 + hlen].decode("latin1")
        start = head.index("'shape': (") + len("'shape': (")
        end = head.index(")", start)
        new = (head[:start] + shape_text + head[end:]).ljust(hlen - 1)[: hlen - 1] + "\n"
        p.write_bytes(b[:10] + new.encode("latin1") + b[10 + hlen :])

    return make


def _npz_garbage(p):
    p.write_bytes(b"PK\x03\x04" + b"\x00" * 50)


def _npz_crc(p):
    np.savez(p, x=np.arange(100.0).reshape(25, 4))
    b = bytearray(p.read_bytes())
    b[100] ^= 0xFF  # inside the member data: CRC mismatch on read
    p.write_bytes(bytes(b))


def _safetensors(header: dict, body: bytes = b""):
    def make(p):
        h = json.dumps(header).encode()
        p.write_bytes(len(h).to_bytes(8, "little") + h + body)

    return make


CASES = {
    "npy cut header": ("x.npy", _cut_header, CorruptFileError),
    "npy negative shape": ("x.npy", _npy_shape("-5, 4"), CorruptFileError),
    "npy int64-overflowing shape": ("x.npy", _npy_shape("4611686018427387904, 8"), CorruptFileError),
    "npy truncated data": ("x.npy", lambda p: p.write_bytes(p.read_bytes()[:-100]), TruncatedFileError),
    "npz not a zip": ("x.npz", _npz_garbage, CorruptFileError),
    "npz bad crc": ("x.npz", _npz_crc, CorruptFileError),
    "safetensors float shape": (
        "x.safetensors",
        _safetensors({"t": {"dtype": "F32", "shape": [2.7, 2], "data_offsets": [0, 16]}}, b"\0" * 16),
        CorruptFileError,
    ),
    "safetensors bool shape": (
        "x.safetensors",
        _safetensors({"t": {"dtype": "F32", "shape": [True, 4], "data_offsets": [0, 16]}}, b"\0" * 16),
        CorruptFileError,
    ),
    "safetensors negative shape": (
        "x.safetensors",
        _safetensors({"t": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}, b"\0" * 16),
        CorruptFileError,
    ),
    "safetensors cut json": (
        "x.safetensors",
        lambda p: p.write_bytes((100).to_bytes(8, "little") + b'{"t": {' + b" " * 93),
        CorruptFileError,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("entry", ["open_source", "analyze", "cli"])
def test_damaged_files_are_oserrors_naming_the_file(tmp_path, case, entry):
    name, damage, exc = CASES[case]
    p = _npy(tmp_path, name) if name.endswith(".npy") else tmp_path / name
    if not name.endswith(".npy"):
        p.write_bytes(b"")
    damage(p)
    if entry == "cli":
        r = cli("analyze", p, "-q")
        assert_one_line_error(r, 2, name)
        return
    with pytest.raises(exc) as ei:
        if entry == "open_source":
            src = isofast.open_source(p)
            isofast.analyze(src)
        else:
            isofast.analyze(isofast.open_source(p))
    e = ei.value
    assert isinstance(e, OSError) and isinstance(e, IsofastError)
    assert name in str(e) and "byte offset" in str(e)
    assert e.filename == str(p)


def test_debug_shows_the_traceback(tmp_path):
    p = _npy(tmp_path)
    _cut_header(p)
    r = cli("--debug", "analyze", p, "-q")
    assert r.returncode != 0 and "Traceback" in r.stderr and "x.npy" in r.stderr
    r = cli("analyze", p, "-q", "--debug")
    assert "Traceback" in r.stderr


def test_gzip_csv_damage_names_the_file(tmp_path):
    from isofast.data.readers import read_table

    p = tmp_path / "s.csv.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(OSError, match="s.csv.gz"):
        read_table(p)


# ------------------------------------------------------------------ error classes
def test_old_import_paths_are_the_same_classes():
    from isofast.data.readers import DataFormatError as A
    from isofast.data.registry import UnknownDatasetError as B
    from isofast.readahead import CorruptFileError as C
    from isofast.readahead import TruncatedFileError as D
    from isofast.sources import CorruptFileError as E

    assert A is DataFormatError and B is UnknownDatasetError and C is E is CorruptFileError and D is TruncatedFileError
    assert isofast.CorruptFileError is CorruptFileError and isofast.NonFiniteError is NonFiniteError
    assert issubclass(DataFormatError, ValueError) and issubclass(UnknownDatasetError, KeyError)
    assert issubclass(UnknownDatasetError, ValueError) and issubclass(TruncatedFileError, OSError)


def test_errors_pickle_with_their_fields():
    import pickle

    e = pickle.loads(pickle.dumps(NonFiniteError("bad", 3, 4)))
    assert (e.row, e.col, str(e)) == (3, 4, "bad")
    f = pickle.loads(pickle.dumps(CorruptFileError("/a/b.npy", 12, "x")))
    assert f.filename == "/a/b.npy" and f.offset == 12 and "b.npy" in str(f)
    g = pickle.loads(pickle.dumps(DataFormatError("/a/s.csv", 7, "bad cell")))
    assert g.path == "/a/s.csv" and g.line == 7 and str(g) == "/a/s.csv:7: bad cell"


@pytest.mark.parametrize("where", ["kernel", "chunks", "file"])
def test_nonfinite_carries_row_and_col(tmp_path, where):
    X = np.ones((30, 5))
    X[17, 3] = np.nan
    with pytest.raises(NonFiniteError) as ei:
        if where == "kernel":
            isofast.avg_cosine(X)
        elif where == "chunks":
            isofast.analyze([X[:10], X[10:]])
        else:
            p = tmp_path / "n.npy"
            np.save(p, X)
            isofast.analyze(isofast.open_source(p, tile_bytes=5 * 8 * 4))
    assert (ei.value.row, ei.value.col) == (17, 3)


@pytest.mark.parametrize("quiet", [["-q"], []])  # with and without the progress wrapper
def test_nan_in_a_row_selection_is_numbered_in_the_file(tmp_path, quiet):
    X = np.ones((300, 4)) + np.random.default_rng(1).normal(size=(300, 4))
    X[150, 2] = np.nan
    p = tmp_path / "n.npy"
    np.save(p, X)
    r = cli("analyze", p, "--rows", "100:", *quiet)
    err = assert_one_line_error(r, 2, "row 150 of the file", "row 50 of the selection rows=100:")
    assert "column 2" in err


@pytest.mark.parametrize(
    "entry",
    [
        "analyze",
        "isoscore",
        "avg_cosine",
        "effective_dim",
        "partition_isotropy",
        "row_norms",
        "massive_rows",
        "log_partition",
        "Moments.update",
        "head_diagnostics",
    ],
)
def test_nan_in_a_row_selection_is_numbered_in_the_file_by_the_python_api(tmp_path, entry):
    X = np.ones((300, 4)) + np.random.default_rng(1).normal(size=(300, 4))
    X[150, 2] = np.nan
    p = tmp_path / "n.npy"
    np.save(p, X)
    src = isofast.open_source(p, rows=slice(100, 300))
    call = {
        "analyze": lambda: isofast.analyze(src),
        "isoscore": lambda: isofast.isoscore(src),
        "avg_cosine": lambda: isofast.avg_cosine(src),
        "effective_dim": lambda: isofast.effective_dim(src),
        "partition_isotropy": lambda: isofast.partition_isotropy(src),
        "row_norms": lambda: isofast.row_norms(src),
        "massive_rows": lambda: isofast.massive_rows(src),
        "log_partition": lambda: isofast.log_partition(src, np.ones(4)),
        "Moments.update": lambda: isofast.Moments(4).update(src),
        "head_diagnostics": lambda: isofast.head_diagnostics(np.eye(4), src),
    }[entry]
    with pytest.raises(NonFiniteError) as ei:
        call()
    assert (ei.value.row, ei.value.col) == (150, 2)
    assert "row 150 of the file" in str(ei.value) and "row 50 of the selection rows=100:300" in str(ei.value)


# ------------------------------------------------------------------ DataFrames
def test_dataframes_of_numeric_columns_are_read():
    pd = pytest.importorskip("pandas")
    X = np.random.default_rng(2).normal(size=(40, 3))
    df = pd.DataFrame({"a": X[:, 0], "b": X[:, 1].astype(np.float32), "c": (X[:, 2] * 10).astype(int)})
    ref = np.column_stack([df["a"], df["b"].astype(np.float64), df["c"].astype(np.float64)])
    assert isofast.avg_cosine(df) == pytest.approx(isofast.avg_cosine(ref), abs=1e-15)
    rep = isofast.analyze(df)
    np.testing.assert_allclose(rep.mean, ref.mean(0), rtol=1e-12)


def test_dataframe_with_a_text_column_names_it():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "label": ["x", "y", "z"]})
    with pytest.raises(ArgumentTypeError, match="column 'label'"):
        isofast.analyze(df)
    with pytest.raises(ValueError, match="column 'n'.*NA.*row 1"):
        isofast.avg_cosine(pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64"), "m": [1, 2, 3]}))
    with pytest.raises(ValueError, match="Series"):
        isofast.avg_cosine(pd.Series([1.0, 2.0]))


# ------------------------------------------------------------------ capture device
def test_capture_device_cuda_without_gpu_is_one_line(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    data = tmp_path / "s.csv"
    data.write_text("value\n" + "\n".join(str(i) for i in range(12)) + "\n")
    r = cli(
        "capture",
        "--model",
        "tiny-gpt2",
        "--data",
        data,
        "--column",
        "value",
        "--out",
        tmp_path / "c",
        "--device",
        "cuda",
        "--quiet",
        timeout=300,
    )
    assert_one_line_error(r, 2, "cuda", "no CUDA GPU")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        from isofast.capture import capture

        capture("tiny-gpt2", [np.arange(10.0)], out=tmp_path / "d", device="cuda", progress=False)


def test_unknown_dataset_is_a_value_and_key_error():
    from isofast.data.registry import info

    with pytest.raises(UnknownDatasetError, match="unknown dataset") as ei:
        info("no-such-dataset")
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, IsofastError)
