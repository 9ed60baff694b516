"""Token layouts of time-series foundation models: which values each model
token (a captured row) carries.

A TSFM does its own numbers → inputs step inside its package (mean scaling
and bins for Chronos; instance normalisation and patches for Chronos-Bolt,
Chronos-2, TimesFM, PatchTST, Moirai, MOMENT). isofast runs that step through
the family's own code, so the model reads exactly what its authors feed it;
this serializer describes the *result*: for a context of ``L`` values, the
sequence of tokens the captured stack sees, and for each token its role and
the first and last time step (0-based, within the context) whose values it
reads. That is what makes captured rows line up with time steps or patches.

Layout of a context x_0..x_{L−1} (in this order):

1. Cut to the last ``max_context`` values when ``max_context`` is set (the
   family's own context limit; the oldest values are dropped).
2. ``unit="value"``: one token per value (Chronos' bins). ``unit="patch"``:
   the values are padded to a whole number of patches of ``patch_len`` —
   on the left (``pad="left"``: Chronos-Bolt, Chronos-2, TimesFM, whose first
   patch then starts with padding) or on the right (``pad="right"``) — and
   cut into patches every ``stride`` steps. ``pad="none"`` keeps only whole
   patches: ``drop="oldest"`` drops the oldest remainder (PatchTST's
   patchify starts at ``sequence_start`` so that the last patch ends at the
   last value), ``drop="newest"`` the newest. ``fixed_values``: families
   that always read a fixed number of values (MOMENT: 512 values in 64
   patches, left-padded with a mask).
3. ``prefix`` / ``suffix`` tokens carry no value (role ``other``, steps −1):
   Chronos' EOS, the ``[REG]`` token of Chronos-Bolt and Chronos-2.

A patch made only of padding has role ``other`` and steps −1; a patch that
reads at least one real value has role ``digit`` (it carries values) and the
steps of its first and last real value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from isofast._input import check_int
from isofast.errors import InputError
from isofast.serializers.base import DIGIT, OTHER


@dataclass(frozen=True)
class TokenTable:
    """The tokens of one context: ``role`` (uint8 role codes, see
    :data:`isofast.serializers.ROLES`), ``first``/``last`` (int64 time steps
    within the context, −1 for tokens without a value) and ``kind`` (a name
    per token: ``"value"``, ``"patch"``, ``"eos"``, ``"reg"``, ``"pad"``)."""

    role: np.ndarray
    first: np.ndarray
    last: np.ndarray
    kind: tuple

    def __len__(self) -> int:
        return int(self.role.size)

    def to_dict(self) -> dict:
        return {
            "role": self.role.tolist(),
            "first": self.first.tolist(),
            "last": self.last.tolist(),
            "kind": list(self.kind),
        }


@dataclass(frozen=True)
class TokenSerializer:
    """The token layout of one TSFM family (module docstring for the rules).

    ``normalization`` names the family's scaling, for the record (it is done by
    the family's own code, not here)."""

    family: str
    unit: str = "patch"
    patch_len: int = 1
    stride: int | None = None
    pad: str = "left"
    drop: str = "oldest"
    max_context: int | None = None
    fixed_values: int | None = None
    prefix: tuple = ()
    suffix: tuple = ()
    normalization: str = ""

    name = "tsfm"

    def __post_init__(self) -> None:
        if self.unit not in ("value", "patch"):
            raise InputError(f"unit must be 'value' or 'patch', got {self.unit!r}")
        check_int(self.patch_len, "patch_len", minimum=1)
        if self.stride is not None:
            check_int(self.stride, "stride", minimum=1)
        if self.pad not in ("left", "right", "none"):
            raise InputError(f"pad must be 'left', 'right' or 'none', got {self.pad!r}")
        if self.drop not in ("oldest", "newest"):
            raise InputError(f"drop must be 'oldest' or 'newest', got {self.drop!r}")
        check_int(self.max_context, "max_context", minimum=1, allow_none=True)
        check_int(self.fixed_values, "fixed_values", minimum=1, allow_none=True)

    @property
    def step(self) -> int:
        return int(self.stride or self.patch_len)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["name"] = self.name
        d["prefix"], d["suffix"] = list(self.prefix), list(self.suffix)
        return d

    def kept(self, length: int) -> int:
        """Values of a context of ``length`` the model reads (after the cut)."""
        length = check_int(length, "length", minimum=1)
        limit = self.fixed_values or self.max_context
        return min(length, limit) if limit else length

    def tokens(self, length: int) -> TokenTable:
        """The token table of a context of ``length`` values (time steps are
        indices into the *whole* context, so a cut context starts at
        ``length − kept``)."""
        n = self.kept(length)
        off = length - n
        role, first, last, kind = [], [], [], []
        for k in self.prefix:
            role.append(OTHER), first.append(-1), last.append(-1), kind.append(k)
        if self.unit == "value":
            for t in range(n):
                role.append(DIGIT), first.append(off + t), last.append(off + t), kind.append("value")
        else:
            P, S = self.patch_len, self.step
            total = self.fixed_values if self.fixed_values else n
            if self.pad == "none":
                n_p = (n - P) // S + 1 if n >= P else 0
                used = (n_p - 1) * S + P if n_p else 0
                start = n - used if self.drop == "oldest" else 0  # step of the first value of patch 0
                for p in range(n_p):
                    a = start + p * S
                    role.append(DIGIT), first.append(off + a), last.append(off + a + P - 1), kind.append("patch")
            else:
                n_p = -(-total // S) if S == P else max(-(-(total - P) // S), 0) + 1
                padded = (n_p - 1) * S + P
                lead = padded - n if self.pad == "left" else 0  # padding positions before value 0
                for p in range(n_p):
                    a, b = p * S - lead, p * S + P - 1 - lead  # value indices covered
                    a, b = max(a, 0), min(b, n - 1)
                    if a > b:
                        role.append(OTHER), first.append(-1), last.append(-1), kind.append("pad")
                    else:
                        role.append(DIGIT), first.append(off + a), last.append(off + b), kind.append("patch")
        for k in self.suffix:
            role.append(OTHER), first.append(-1), last.append(-1), kind.append(k)
        return TokenTable(
            np.asarray(role, np.uint8), np.asarray(first, np.int64), np.asarray(last, np.int64), tuple(kind)
        )

    def n_tokens(self, length: int) -> int:
        return len(self.tokens(length))
