"""Seasonal periods: points per cycle for frequency labels, KernelSynth
presets and registry datasets.

The period ``m`` is what seasonal naive (ŷ_{T+h} = x_{T+h−m·ceil(h/m)}) and
the MASE scale (mean_{t>m}|x_t − x_{t−m}|) use. Frequencies follow the usual
forecasting convention (Hyndman & Athanasopoulos, "Forecasting: Principles and
Practice", 3rd ed., Sec. 2.1; R's ``frequency``): the cycle is the next
calendar unit up.

==========================  ====  ==============================================
frequency                   m     labels accepted (pandas aliases, words)
==========================  ====  ==============================================
yearly                      1     ``A``, ``AS``, ``Y``, ``YS``, ``YE``, ``BA``…, ``yearly``, ``annual``
quarterly                   4     ``Q``, ``QS``, ``QE``, ``BQ``…, ``quarterly``
monthly                     12    ``M``, ``MS``, ``ME``, ``BM``, ``BMS``, ``monthly``
semi-monthly                24    ``SM``, ``SMS``
weekly                      52    ``W``, ``W-SUN`` … ``W-SAT``, ``weekly``
daily                       7     ``D``, ``daily``
business daily              5     ``B``, ``C``, ``business``
hourly                      24    ``H``, ``h``, ``hourly``
k minutes                   1440/k ``min``, ``T``, ``30min``, ``15T``, ``half-hourly`` (48), ``minutely``
k seconds                   3600/k ``S``, ``s``, ``10s``, ``secondly``
==========================  ====  ==============================================

Anchors (``-DEC``, ``-SAT``) are ignored; a multiple ``kX`` divides the base
period (``2H`` → 12, ``3M`` → 4, ``6H`` → 4); when ``k`` does not divide it
(``5H``, ``2D``) there is no whole-number cycle and the period is 1, as in
GluonTS' ``get_seasonality``. Anything else (``500ms``, ``"irregular"``, None)
is unknown: None.

Note: GluonTS' ``get_seasonality`` (which GIFT-Eval uses for its MASE) takes
``D`` → 1 and ``W`` → 1; this table follows FPP (``D`` → 7, ``W`` → 52).
"""

from __future__ import annotations

import math
import re

__all__ = ["FREQUENCY_SEASONS", "dataset_season", "preset_season", "season_length"]

#: Base period for a pandas base alias (multiplier 1, no anchor). Case matters
#: where pandas' does: ``MS`` month start, ``ms`` millisecond (unknown here).
FREQUENCY_SEASONS: dict[str, int] = {
    # yearly
    "A": 1,
    "AS": 1,
    "Y": 1,
    "YS": 1,
    "YE": 1,
    "BA": 1,
    "BAS": 1,
    "BY": 1,
    "BYS": 1,
    "BYE": 1,
    # quarterly
    "Q": 4,
    "QS": 4,
    "QE": 4,
    "BQ": 4,
    "BQS": 4,
    "BQE": 4,
    # monthly
    "M": 12,
    "MS": 12,
    "ME": 12,
    "BM": 12,
    "BMS": 12,
    "BME": 12,
    "CBMS": 12,
    "CBME": 12,
    "SM": 24,
    "SMS": 24,
    "SME": 24,
    # weekly, daily
    "W": 52,
    "D": 7,
    "d": 7,
    "B": 5,
    "C": 5,
    # hourly and below (daily cycle for hours and minutes, hourly for seconds)
    "H": 24,
    "h": 24,
    "BH": 24,
    "bh": 24,
    "T": 1440,
    "min": 1440,
    "S": 3600,
    "s": 3600,
}

_WORDS: dict[str, int] = {
    "yearly": 1,
    "annual": 1,
    "annually": 1,
    "year": 1,
    "quarterly": 4,
    "quarter": 4,
    "monthly": 12,
    "month": 12,
    "weekly": 52,
    "week": 52,
    "daily": 7,
    "day": 7,
    "business": 5,
    "business-daily": 5,
    "business_daily": 5,
    "hourly": 24,
    "hour": 24,
    "half-hourly": 48,
    "half_hourly": 48,
    "halfhourly": 48,
    "30-minutely": 48,
    "quarter-hourly": 96,
    "quarter_hourly": 96,
    "minutely": 1440,
    "minute": 1440,
    "secondly": 3600,
    "second": 3600,
}

_ALIAS = re.compile(r"^\s*(\d*)\s*([A-Za-z]+)(?:-[A-Za-z]+)?\s*$")


def season_length(frequency) -> int | None:
    """Seasonal period (points per cycle) for a frequency label, None when unknown.

    ``frequency``: a pandas alias (``"MS"``, ``"30min"``, ``"W-SAT"``, ``"2H"``),
    a word (``"monthly"``, ``"half-hourly"``, case-insensitive), a pandas
    ``DateOffset`` (its ``freqstr``) or None. See the module table.
    """
    if frequency is None:
        return None
    if not isinstance(frequency, str):
        frequency = getattr(frequency, "freqstr", None)
        if not isinstance(frequency, str):
            return None
    word = frequency.strip().lower()
    if word in _WORDS:
        return _WORDS[word]
    m = _ALIAS.match(frequency)
    if m is None:
        return None
    mult = int(m.group(1)) if m.group(1) else 1
    token = m.group(2)
    base = FREQUENCY_SEASONS.get(token)
    if base is None and token.lower() not in ("ms", "m"):  # ms: milliseconds; m: ambiguous
        base = FREQUENCY_SEASONS.get(token.upper())
    if base is None:
        return None
    if mult < 1:
        return None
    q, r = divmod(base, mult)
    return q if r == 0 and q >= 1 else 1


def preset_season(preset: str, length: int) -> int | None:
    """Points per cycle of a KernelSynth preset in a series of ``length`` points,
    None for a non-periodic preset.

    ``Seasonality_<label>`` is ``ExpSineSquared(1, periodicity=P/length)`` on
    ``linspace(0, 1, length)`` (:mod:`isofast.data.kernelsynth`, P =
    ``SEASONALITY_PERIODS[label]``); the grid step is 1/(length − 1), so a cycle
    spans P·(length − 1)/length points, returned rounded to the nearest integer
    (P once length > 2P: 96 for ``Seasonality_0.25H`` at 1024; 95 at 128).
    ``length`` is the length the series was *generated* with, not the context
    window. A period longer than the series is still returned (seasonal naive
    falls back to naive on a shorter context). Unknown names raise ``KeyError``
    (as :func:`isofast.data.preset`).
    """
    from .kernelsynth import SEASONALITY_PERIODS, _check_length, kernel_bank

    length = _check_length(length)
    if not isinstance(preset, str):
        raise TypeError(f"preset must be a str, got {type(preset).__name__}")
    if preset.startswith("Seasonality_"):
        label = preset[len("Seasonality_") :]
        if label in SEASONALITY_PERIODS:
            p = SEASONALITY_PERIODS[label]
            return max(1, math.floor(p * (length - 1) / length + 0.5))
    if preset not in kernel_bank(8):
        raise KeyError(f"unknown kernel preset {preset!r}; known: {', '.join(kernel_bank(8))}")
    return None


def dataset_season(name: str) -> int | None:
    """Seasonal period of a registry dataset from ``isofast.data.info(name).frequency``
    (None when the frequency has no calendar cycle, e.g. ``heartrate``'s 500 ms)."""
    from .registry import info

    return season_length(info(name).frequency)
