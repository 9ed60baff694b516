"""User files: CSV/TSV/parquet columns and Monash .tsf, including malformed files."""

import gzip

import numpy as np
import pytest

from isofast.data import DataFormatError, read_csv, read_table, read_tsf


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ CSV


def test_csv_columns_time_and_missing(tmp_path):
    p = _write(
        tmp_path / "x.csv",
        "time,load,temp\n"
        "2024-01-01 00:00:00,1.5,10\n"
        "2024-01-01 01:00:00,,11\n"
        "2024-01-01 02:00:00,NA,12.5\n"
        "\n"
        "2024-01-01 03:00:00,4,?\n",
    )
    out = read_table(p, time_column="time")
    assert [s.name for s in out] == ["load", "temp"]
    load, temp = out
    assert np.array_equal(load.values[[0, 3]], [1.5, 4.0]) and np.isnan(load.values[1:3]).all()
    assert np.isnan(temp.values[3]) and temp.values[2] == 12.5
    assert load.timestamps[1] == np.datetime64("2024-01-01T01:00:00")
    one = read_table(p, column="temp")
    assert len(one) == 1 and one[0].timestamps is None and len(one[0]) == 4
    interp = read_csv(p, column="load", nan="interpolate")[0]
    np.testing.assert_allclose(interp.values, [1.5, 2.3333333333333335, 3.1666666666666665, 4.0])


def test_tsv_and_gzip(tmp_path):
    p = tmp_path / "x.tsv.gz"
    with gzip.open(p, "wt") as f:
        f.write("a\tb\n1\t2\n3\t4\n")
    a, b = read_table(p)
    assert a.values.tolist() == [1.0, 3.0] and b.values.tolist() == [2.0, 4.0]


@pytest.mark.parametrize(
    "text, line, what",
    [
        ("a,b\n1,2\n3\n", 3, "expected 2 fields, found 1"),
        ("a,b\n1,2\n3,4\n5,x7\n", 4, "cannot parse 'x7'"),
        ("t,a\n2024-01-01,1\n2024-13-45,2\n", 3, "time column 't'"),
        ("", 1, "empty file"),
        ("a,a\n1,2\n", 1, "duplicate column"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, text, line, what):
    p = _write(tmp_path / "bad.csv", text)
    tcol = "t" if text.startswith("t,") else None
    with pytest.raises(DataFormatError) as ei:
        read_table(p, time_column=tcol)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:{line}:"), msg
    assert what in msg and ei.value.line == line
    assert isinstance(ei.value, ValueError)


def test_csv_unknown_column_and_missing_file(tmp_path):
    p = _write(tmp_path / "x.csv", "a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"no column 'c'.*\['a', 'b'\]"):
        read_table(p, column="c")
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "missing.csv")


# ------------------------------------------------------------------ parquet


def test_parquet_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    t = np.arange("2024-01-01", "2024-01-06", dtype="datetime64[D]").astype("datetime64[s]")
    table = pa.table({"ts": t, "y": [1.0, None, 3.0, 4.0, 5.0], "k": [1, 2, 3, 4, 5]})
    p = tmp_path / "x.parquet"
    pq.write_table(table, p)
    y, k = read_table(p, time_column="ts")
    assert y.name == "y" and np.isnan(y.values[1]) and y.values[4] == 5.0
    assert k.values.dtype == np.float64 and k.timestamps[-1] == np.datetime64("2024-01-05")
    (only,) = read_table(p, column="k")
    assert only.timestamps is None
    with pytest.raises(ValueError, match="no column"):
        read_table(p, column="z")


def test_corrupt_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ValueError, match=str(p)):
        read_table(p)


# ------------------------------------------------------------------ .tsf

GOOD_TSF = """# A comment line
@relation demo_energy
@attribute series_name string
@attribute state string
@attribute start_timestamp date
@frequency half_hourly
@horizon 48
@missing true
@equallength false
@data
T1:NSW:2002-01-01 00-00-00:1.5,2,?,4
T2:VIC:2002-01-02 12-30-00:5,6,7
"""


def test_tsf_header_series_and_missing(tmp_path):
    data = read_tsf(_write(tmp_path / "demo.tsf", GOOD_TSF))
    assert data.relation == "demo_energy"
    assert data.attributes == [("series_name", "string"), ("state", "string"), ("start_timestamp", "date")]
    assert (data.frequency, data.horizon, data.missing, data.equallength) == ("half_hourly", 48, True, False)
    assert len(data) == 2 and [s.name for s in data] == ["T1", "T2"]
    t1, t2 = data
    assert np.isnan(t1.values[2]) and t1.values[3] == 4.0 and t1.meta["state"] == "NSW"
    assert t1.frequency == "30min"
    assert t2.timestamps[0] == np.datetime64("2002-01-02T12:30:00")
    assert t2.timestamps[2] == np.datetime64("2002-01-02T13:30:00")
    h = data.header()
    assert h["horizon"] == 48 and h["relation"] == "demo_energy"
    assert data.to_dict()["series"][0]["values"][2] is None
    with pytest.raises(ValueError, match="demo.tsf:11"):
        read_tsf(tmp_path / "demo.tsf", nan="error")


def test_tsf_monthly_calendar_and_numeric_attribute(tmp_path):
    text = (
        "@relation m\n@attribute series_name string\n@attribute start_timestamp date\n"
        "@attribute weight numeric\n@frequency monthly\n@horizon 12\n@missing false\n"
        "@equallength true\n@data\n"
        "A:1990-01-31 00-00-00:0.5:1,2,3\nB:1991-11-01 00-00-00:2:4,5,6\n"
    )
    a, b = read_tsf(_write(tmp_path / "m.tsf", text))
    assert a.meta["weight"] == 0.5 and a.frequency == "MS"
    assert b.timestamps.tolist() == [
        np.datetime64("1991-11-01T00:00:00").item(),
        np.datetime64("1991-12-01T00:00:00").item(),
        np.datetime64("1992-01-01T00:00:00").item(),
    ]


_HEAD = "@relation r\n@attribute series_name string\n@frequency daily\n@horizon 7\n@missing true\n@equallength true\n@data\n"


@pytest.mark.parametrize(
    "text, line, what",
    [
        ("@relation r\n@attribute x float\n@data\n", 2, "@attribute needs NAME TYPE"),
        ("@relation r\nT1:1,2\n", 2, "data line before @data"),
        ("@relation r\n@horizon soon\n@data\n", 2, "@horizon must be an integer"),
        ("@relation r\n@missing maybe\n@data\n", 2, "@missing must be true or false"),
        ("@relation r\n@colour blue\n@data\n", 2, "unknown header tag"),
        (_HEAD + "T1:1,2,3\nT2:x:1,2,3\n", 9, "attribute field"),
        (_HEAD + "T1:1,2,3\nT2:1,abc,3\n", 9, "'abc' is not a number"),
        (_HEAD + "T1:1,2,3\nT2:1,2\n", 9, "@equallength true"),
        (_HEAD + "T1:\n", 8, "no values"),
        (_HEAD + "T1:?,?\n", 8, "every value of the series is missing"),
        (
            "@relation r\n@attribute series_name string\n@attribute start_timestamp date\n@data\n"
            "T1:2001-02-30 00-00-00:1,2\n",
            5,
            "is not a date",
        ),
    ],
)
def test_malformed_tsf_names_file_and_line(tmp_path, text, line, what):
    p = _write(tmp_path / "bad.tsf", text)
    with pytest.raises(DataFormatError) as ei:
        read_tsf(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:{line}:"), msg
    assert what in msg


def test_tsf_without_data_section(tmp_path):
    p = _write(tmp_path / "nodata.tsf", "@relation r\n@attribute series_name string\n")
    with pytest.raises(ValueError, match="no @data section"):
        read_tsf(p)
