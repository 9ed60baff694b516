"""isofast.progress: the one progress display (analyze, capture, study)."""

import io
import sys
from types import SimpleNamespace

import numpy as np

from isofast.progress import Progress, SourceProgress, format_seconds


def test_format_seconds():
    assert format_seconds(7.4) == "7s"
    assert format_seconds(65) == "1m05s"
    assert format_seconds(3725) == "1h02m05s"


def test_plain_line_counts_rate_eta_and_note():
    buf = io.StringIO()
    p = Progress(10, desc="study", unit="cell", noun="cells", initial=2, stream=buf, every=0.0)
    p.set_postfix("2 reused")
    p.update(3)
    p.close()
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2  # one line per update (every=0), then the last
    assert lines[-1].startswith("study: 5/10 cells (50.0%)")
    assert "cell/s" in lines[-1] and "ETA" in lines[-1] and lines[-1].endswith("2 reused")


def test_disabled_and_idle_displays_write_nothing():
    buf = io.StringIO()
    p = Progress(10, desc="x", enabled=False, stream=buf, every=0.0)
    p.update(4)
    p.close()
    assert buf.getvalue() == "" and p.done == 4
    q = Progress(0, desc="x", stream=buf)
    q.close()  # nothing was counted: nothing to report
    assert buf.getvalue() == ""


def test_tqdm_when_available_plain_line_without(monkeypatch, capsys):
    p = Progress(5, desc="capture m", unit="tok", noun="tokens")
    assert p.bar is not None  # tqdm is installed in the test environment
    p.update(5)
    p.close()
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # "not installed"
    p = Progress(5, desc="capture m", unit="tok", noun="tokens")
    assert p.bar is None
    p.update(5)
    p.close()
    err = capsys.readouterr().err
    assert err.startswith("capture m: 5/5 tokens (100.0%)") and "tok/s" in err


def test_cell_progress_shows_reused_and_failures(monkeypatch, capsys):
    from isofast.study.schedule import CellProgress

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    bar = CellProgress(4, 1, True)
    bar.running("m / d / clean")
    bar.done(SimpleNamespace(error=None))
    bar.running("m / d / noisy")
    bar.done(SimpleNamespace(error="boom"))
    bar.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("study: 3/4 cells (75.0%)")
    assert "1 reused, 1 failed, m / d / noisy" in err[-1] and "ETA" in err[-1]
    quiet = CellProgress(4, 0, False)
    quiet.done(SimpleNamespace(error=None))
    quiet.close()
    assert capsys.readouterr().err == ""


def test_source_progress_is_a_source():
    X = np.arange(12.0).reshape(6, 2)
    buf = io.StringIO()
    p = SourceProgress(X, passes=1, stream=buf, every=0.0, label="L")
    assert p.shape == (6, 2) and p._start == 0 and p._stop is None
    got = np.concatenate(list(p.iter_chunks()))
    p.finish()
    assert np.array_equal(got, X) and p.rows == 6 and p.bytes == X.nbytes
    assert buf.getvalue().splitlines()[-1].startswith("isofast analyze L: read 6 rows")
