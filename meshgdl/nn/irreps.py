"""SO(2) feature types, in the style of e3nn's ``Irreps``.

A feature vector at a vertex is expressed in that vertex's gauge (tangent frame).
It is a direct sum of irreducible representations of SO(2):

* ``rho_0``: a scalar, invariant under gauge rotations (dimension 1);
* ``rho_n`` (n >= 1): a 2-vector rotating with frequency n (dimension 2),
  ``rho_n(g) = [[cos ng, -sin ng], [sin ng, cos ng]]``.

``Irreps("16x0 + 8x1 + 4x2")`` lists multiplicity x frequency terms in order; the
feature layout is the concatenation of the terms, each term ``mul`` consecutive
copies of its irrep (so a ``8x1`` term occupies 16 entries: pairs (c_0, s_0), (c_1, s_1), ...).

Gauge transformation law: if every vertex p rotates its reference direction by
``alpha_p`` (counter-clockwise about the normal), a feature's coefficients change
as ``f_p -> rho(-alpha_p) f_p``. :meth:`Irreps.transform` applies ``rho(angle)``.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Sequence, Union

import torch

_TERM = re.compile(r"^\s*(?:(\d+)\s*x\s*)?(\d+)\s*$")

IrrepsLike = Union["Irreps", str, Sequence[tuple[int, int]]]


class Irreps:
    """An ordered direct sum of SO(2) irreps, parsed from e.g. ``"16x0 + 8x1"``."""

    __slots__ = ("terms",)

    def __init__(self, spec: IrrepsLike = ""):
        if isinstance(spec, Irreps):
            terms = spec.terms
        elif isinstance(spec, str):
            terms = []
            for part in spec.split("+"):
                if not part.strip():
                    if spec.strip():
                        raise ValueError(f"empty term in irreps {spec!r}")
                    continue
                m = _TERM.match(part)
                if not m:
                    raise ValueError(f"cannot parse irreps term {part.strip()!r} in {spec!r} (expected e.g. '8x1')")
                terms.append((int(m.group(1) or 1), int(m.group(2))))
        else:
            terms = [(int(mul), int(freq)) for mul, freq in spec]
        for mul, freq in terms:
            if mul < 0 or freq < 0:
                raise ValueError(f"multiplicity and frequency must be >= 0, got {mul}x{freq}")
        self.terms: tuple[tuple[int, int], ...] = tuple((m, f) for m, f in terms if m > 0)

    # -- container protocol -------------------------------------------------
    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.terms)

    def __len__(self) -> int:
        return len(self.terms)

    def __eq__(self, other) -> bool:
        try:
            return self.terms == Irreps(other).terms
        except (ValueError, TypeError):
            return NotImplemented

    def __hash__(self) -> int:
        return hash(self.terms)

    def __add__(self, other: IrrepsLike) -> "Irreps":
        return Irreps(self.terms + Irreps(other).terms)

    def __repr__(self) -> str:
        return f"Irreps({str(self)!r})"

    def __str__(self) -> str:
        return " + ".join(f"{m}x{f}" for m, f in self.terms)

    # -- sizes ----------------------------------------------------------------
    @staticmethod
    def irrep_dim(freq: int) -> int:
        return 1 if freq == 0 else 2

    @property
    def dim(self) -> int:
        return sum(m * self.irrep_dim(f) for m, f in self.terms)

    @property
    def num_irreps(self) -> int:
        return sum(m for m, _ in self.terms)

    @property
    def max_freq(self) -> int:
        return max((f for _, f in self.terms), default=0)

    def count(self, freq: int) -> int:
        """Total multiplicity of frequency ``freq``."""
        return sum(m for m, f in self.terms if f == freq)

    def slices(self) -> list[slice]:
        """One slice per term into the feature dimension."""
        out, start = [], 0
        for m, f in self.terms:
            d = m * self.irrep_dim(f)
            out.append(slice(start, start + d))
            start += d
        return out

    def copies(self) -> list[tuple[int, int]]:
        """``(freq, start)`` of every irrep copy in layout order (a copy spans ``irrep_dim(freq)`` entries)."""
        out, start = [], 0
        for m, f in self.terms:
            d = self.irrep_dim(f)
            for _ in range(m):
                out.append((f, start))
                start += d
        return out

    def simplify(self) -> "Irreps":
        """Merge adjacent terms of the same frequency."""
        merged: list[list[int]] = []
        for m, f in self.terms:
            if merged and merged[-1][1] == f:
                merged[-1][0] += m
            else:
                merged.append([m, f])
        return Irreps([(m, f) for m, f in merged])

    def sort(self) -> "Irreps":
        """Terms grouped by increasing frequency (a new layout: permute features accordingly)."""
        return Irreps(sorted(self.terms, key=lambda t: t[1])).simplify()

    # -- representation -------------------------------------------------------
    def rho(self, angle: torch.Tensor) -> torch.Tensor:
        """Block-diagonal representation matrices ``rho(angle)``: ``(*angle.shape, dim, dim)``."""
        angle = torch.as_tensor(angle)
        dtype = angle.dtype if angle.is_floating_point() else torch.get_default_dtype()
        angle = angle.to(dtype)
        out = angle.new_zeros(*angle.shape, self.dim, self.dim)
        i = 0
        for m, f in self.terms:
            for _ in range(m):
                if f == 0:
                    out[..., i, i] = 1.0
                    i += 1
                else:
                    c, s = torch.cos(f * angle), torch.sin(f * angle)
                    out[..., i, i], out[..., i, i + 1] = c, -s
                    out[..., i + 1, i], out[..., i + 1, i + 1] = s, c
                    i += 2
        return out

    def transform(self, x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        """Apply ``rho(angle)`` to features without building matrices.

        x: ``(..., dim)``; angle: broadcastable to ``x.shape[:-1]`` (e.g. one angle per
        vertex for ``x`` of shape ``(n, dim)``, or per edge). Returns the same shape.
        """
        if x.shape[-1] != self.dim:
            raise ValueError(f"features have {x.shape[-1]} channels, irreps {self} need {self.dim}")
        angle = torch.as_tensor(angle, dtype=x.dtype, device=x.device)
        parts = []
        # a rho_f copy (a, b) rotates as the complex number a + ib times e^{i f angle}: one
        # complex multiply per term (forward and backward) instead of ~8 real elementwise ops
        fast = x.dtype in (torch.float32, torch.float64) and x.stride(-1) == 1
        for sl, (m, f) in zip(self.slices(), self.terms):
            xs = x[..., sl]
            if f == 0:
                parts.append(xs)
                continue
            if fast and sl.start % 2 == 0 and all(st % 2 == 0 for st in xs.stride()[:-1]):
                z = torch.view_as_complex(xs.unflatten(-1, (m, 2)))
                rot = torch.polar(torch.ones_like(angle), f * angle)
                parts.append(torch.view_as_real(z * rot[..., None]).flatten(-2))
                continue
            xs = xs.reshape(*xs.shape[:-1], m, 2)
            c = torch.cos(f * angle)[..., None]
            s = torch.sin(f * angle)[..., None]
            a, b = xs[..., 0], xs[..., 1]
            parts.append(torch.stack([c * a - s * b, s * a + c * b], dim=-1).reshape(*x.shape[:-1], 2 * m))
        return torch.cat(parts, dim=-1) if parts else x

    def scalar_mask(self) -> torch.Tensor:
        """(dim,) bool mask of the rho_0 (gauge-invariant) channels."""
        mask = torch.zeros(self.dim, dtype=torch.bool)
        for sl, (_, f) in zip(self.slices(), self.terms):
            if f == 0:
                mask[sl] = True
        return mask

    def randn(self, *lead: int, dtype=None, generator=None) -> torch.Tensor:
        return torch.randn(*lead, self.dim, dtype=dtype, generator=generator)


def as_irreps(x: IrrepsLike) -> Irreps:
    return x if isinstance(x, Irreps) else Irreps(x)


def concat(irreps: Iterable[IrrepsLike]) -> Irreps:
    out = Irreps("")
    for ir in irreps:
        out = out + ir
    return out
