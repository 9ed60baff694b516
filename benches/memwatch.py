"""Peak-memory sampling for benchmarks (Linux /proc).

``peak_anon`` tracks anonymous resident memory (heap, temporaries): what a
computation allocates above a memory-mapped input, whose file-backed pages are
counted separately as RssFile.
"""

from __future__ import annotations

import threading
import time


def _status() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("RssAnon", "RssFile", "VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


class PeakMemory:
    """Context manager sampling RssAnon/VmRSS every ``interval`` seconds."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.base_anon = 0
        self.peak_anon = 0
        self.peak_rss = 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            s = _status()
            self.peak_anon = max(self.peak_anon, s.get("RssAnon", 0))
            self.peak_rss = max(self.peak_rss, s.get("VmRSS", 0))
            time.sleep(self.interval)

    def __enter__(self):
        s = _status()
        self.base_anon = s.get("RssAnon", 0)
        self.peak_anon = self.base_anon
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        s = _status()
        self.peak_anon = max(self.peak_anon, s.get("RssAnon", 0))

    @property
    def extra_anon(self) -> int:
        """Peak anonymous memory above what was resident at entry (bytes)."""
        return self.peak_anon - self.base_anon
