"""Progress of long loops on stderr: the one implementation behind ``isofast
analyze`` (rows/s, MB/s), :func:`isofast.capture` (tokens/s) and the study
(cells done, failed, reused).

:class:`Progress` counts units of work towards a total. It draws a tqdm bar
when tqdm is installed and the caller gives no stream of its own (tqdm knows
terminals and notebooks); otherwise it writes a plain line, rewritten in
place on a terminal (at most every ``every`` seconds, default 0.5) or
appended every ``every`` seconds elsewhere (default 10, so a log stays short).
Disabled, it counts and writes nothing. Rate and ETA are measured from the
first unit counted in this run: units given as ``initial`` (work found
already done, e.g. reused cells) count towards the total but not the rate::

    rate = (done − initial) / elapsed,   ETA = (total − done) / rate

:class:`SourceProgress` wraps a row source (an array or anything with
``iter_chunks``) and reports rows/s, MB/s and the ETA over all passes of the
analysis.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["Progress", "SourceProgress", "format_seconds"]


def format_seconds(s: float) -> str:
    """``3725`` → ``1h02m05s``, ``65`` → ``1m05s``, ``7.4`` → ``7s``."""
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


class Progress:
    """A progress display of ``total`` units (None: unknown).

    ``desc`` opens the line; ``unit`` is the rate's unit (``tok`` →
    ``tok/s``) and tqdm's; ``noun`` follows the counts (default ``unit``).
    ``update(n, nbytes)`` counts ``n`` units (and bytes, which add MB/s);
    ``set_stage`` names a phase shown before the counts (``pass 1/2``);
    ``set_postfix`` shows a note after them. ``close(summary)`` ends the
    display and writes ``summary`` (if given) as a line of its own; a plain
    display without one writes its last line, if any work was counted.
    """

    def __init__(
        self,
        total: int | None,
        *,
        desc: str,
        unit: str = "it",
        noun: str | None = None,
        enabled: bool = True,
        initial: int = 0,
        stream: TextIO | None = None,
        every: float | None = None,
        unit_scale: bool = False,
    ):
        self.total = None if total is None else int(total)
        self.desc, self.unit, self.noun = desc, unit, noun or unit
        self.enabled = bool(enabled)
        self.initial = self.done = int(initial)
        self.bytes = 0
        self.stage = ""
        self.postfix = ""
        self.bar: Any = None
        self._own_stream = stream is not None
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every if every is not None else (0.5 if self.tty else 10.0)
        self.t0 = self._last = time.perf_counter()
        self._drawn = False
        if self.enabled and not self._own_stream:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm ships with the torch extra; plain lines without it
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(
                    total=self.total,
                    initial=self.initial,
                    unit=unit,
                    unit_scale=unit_scale,
                    desc=desc,
                    file=sys.stderr,
                    dynamic_ncols=True,
                )

    def start(self) -> None:
        """Restart the clock (when the work begins later than the display)."""
        self.t0 = self._last = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return max(time.perf_counter() - self.t0, 1e-9)

    @property
    def rate(self) -> float:
        """Units per second of this run."""
        return (self.done - self.initial) / self.elapsed

    def update(self, n: int = 1, nbytes: int = 0) -> None:
        self.done += int(n)
        self.bytes += int(nbytes)
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(int(n))
            return
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            self._write(self.line())

    def set_stage(self, text: str) -> None:
        self.stage = text
        self._refresh()

    def set_postfix(self, text: str) -> None:
        self.postfix = text
        self._refresh()

    def _refresh(self) -> None:
        if self.bar is not None:
            parts = [p for p in (self.stage, self._mbs(), self.postfix) if p]
            self.bar.set_postfix_str(", ".join(parts), refresh=False)

    def _mbs(self) -> str:
        return f"{self.bytes / self.elapsed / 1e6:,.1f} MB/s" if self.bytes else ""

    def line(self) -> str:
        """The plain progress line: stage, counts, rate, ETA, note."""
        rate = self.rate
        parts = [self.stage] if self.stage else []
        if self.total:
            parts.append(f"{self.done:,}/{self.total:,} {self.noun} ({100.0 * self.done / self.total:.1f}%)")
        else:
            parts.append(f"{self.done:,} {self.noun}")
        shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"  # slow units (cells): keep digits
        parts.append(f"{shown} {self.unit}/s" + (f", {self._mbs()}" if self.bytes else ""))
        if self.total and rate > 0:
            parts.append(f"ETA {format_seconds(max(self.total - self.done, 0) / rate)}")
        if self.postfix:
            parts.append(self.postfix)
        return f"{self.desc}: " + "  ".join(parts)

    def _write(self, text: str, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
            self._drawn = not final
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, summary: str | None = None) -> None:
        """End the display; a plain one writes its last line, then ``summary``."""
        if not self.enabled:
            return
        if self.bar is not None:
            if self.bytes:
                self._refresh()
            self.bar.close()
            self.bar = None
            if summary:
                self.stream.write(summary + "\n")
                self.stream.flush()
        elif summary:
            self._write(summary, final=True)
        elif self.done > self.initial or self._drawn:  # no work this run: nothing to report
            self._write(self.line(), final=True)
        self.enabled = False  # a second close writes nothing


class SourceProgress:
    """Wraps a row source and reports rows/s, MB/s and the ETA on ``stream``.

    ``passes`` is how often the analysis reads the source (2 for the full
    suite), so the ETA covers all of them. The wrapper is itself a
    re-iterable source with the wrapped one's ``isofast_dtype`` and row
    selection, so a NaN row is still numbered in the file
    (:func:`isofast._input.in_file_rows`). ``finish()`` writes the summary
    line. The display is :class:`Progress` (``stream``/``every`` as there).
    """

    def __init__(
        self,
        source: Any,
        *,
        passes: int = 2,
        stream: TextIO | None = None,
        every: float | None = None,
        label: str = "",
        desc: str = "isofast analyze",
    ):
        self.source = source
        self.passes = int(passes)
        self.label = label
        self.isofast_dtype = getattr(source, "isofast_dtype", None)
        n = source.shape[0] if hasattr(source, "shape") else None
        self.desc = f"{desc}{(' ' + label) if label else ''}"
        self.progress = Progress(
            int(n) * self.passes if n is not None else None,
            desc=self.desc,
            unit="rows",
            stream=stream,
            every=every,
            unit_scale=True,
        )
        self.pass_no = 0
        self._started = False

    @property
    def rows(self) -> int:
        return self.progress.done

    @property
    def bytes(self) -> int:
        return self.progress.bytes

    @property
    def shape(self):
        return self.source.shape

    @property
    def _start(self):
        return getattr(self.source, "_start", 0)

    @property
    def _stop(self):
        return getattr(self.source, "_stop", None)

    def _describe(self) -> str:
        d = getattr(self.source, "_describe", None)
        return d() if callable(d) else ""

    def _tiles(self) -> Iterator[Any]:
        if hasattr(self.source, "iter_chunks"):
            return self.source.iter_chunks()
        from isofast.readahead import TILE_BYTES

        arr = self.source  # an in-memory array: zero-copy row slices, so progress moves
        step = max(1, TILE_BYTES // max(1, arr.shape[1] * arr.dtype.itemsize))
        return (arr[a : a + step] for a in range(0, arr.shape[0], step))

    def iter_chunks(self) -> Iterator[Any]:
        self.pass_no += 1
        if not self._started:  # the clock runs from the first tile asked for
            self._started = True
            self.progress.start()
        self.progress.set_stage(f"pass {self.pass_no}/{self.passes}")
        for c in self._tiles():
            yield c
            self.progress.update(c.shape[0], c.nbytes)

    def line(self) -> str:
        return self.progress.line()

    def finish(self) -> None:
        p = self.progress
        el = p.elapsed if self._started else 1e-9
        p.close(
            f"{self.desc}: read {self.rows:,} rows ({self.bytes / 1e6:,.1f} MB) in {format_seconds(el)}: "
            f"{self.rows / el:,.0f} rows/s, {self.bytes / el / 1e6:,.1f} MB/s"
        )
