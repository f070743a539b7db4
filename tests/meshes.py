"""Analytic test meshes shared by the test-suite (numpy in, numpy out)."""

from __future__ import annotations

import numpy as np
import trimesh


def icosphere(subdivisions: int = 4, radius: float = 1.0):
    """Unit icosphere, vertices exactly on the sphere. Returns (V float64, F int64)."""
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int64)


def grid(nx: int = 8, ny: int = 8, size: float = 1.0, jitter: float = 0.0, seed: int = 0):
    """Flat triangulated square in the z=0 plane, CCW faces seen from +z.

    ``jitter`` moves interior vertices in-plane (fraction of the spacing) so angles
    are not all 45/90 degrees.
    """
    xs, ys = np.meshgrid(np.linspace(0, size, nx), np.linspace(0, size, ny), indexing="xy")
    V = np.stack([xs.ravel(), ys.ravel(), np.zeros(nx * ny)], axis=1)
    if jitter:
        rng = np.random.default_rng(seed)
        h = size / (nx - 1)
        interior = (xs.ravel() > 0) & (xs.ravel() < size) & (ys.ravel() > 0) & (ys.ravel() < size)
        V[interior, :2] += rng.uniform(-jitter, jitter, (interior.sum(), 2)) * h
    idx = np.arange(nx * ny).reshape(ny, nx)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    F = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return V, F.astype(np.int64)


def torus(n_major: int = 32, n_minor: int = 16, R: float = 1.0, r: float = 0.35):
    """Closed torus (genus 1, Euler characteristic 0), outward-oriented faces."""
    u = np.linspace(0, 2 * np.pi, n_major, endpoint=False)
    v = np.linspace(0, 2 * np.pi, n_minor, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    V = np.stack(
        [(R + r * np.cos(vv)) * np.cos(uu), (R + r * np.cos(vv)) * np.sin(uu), r * np.sin(vv)], -1
    ).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
    i2, j2 = (i + 1) % n_major, (j + 1) % n_minor
    a, b, c, d = i * n_minor + j, i2 * n_minor + j, i2 * n_minor + j2, i * n_minor + j2
    F = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return V, F.astype(np.int64)


def tube(n_around: int = 64, n_along: int = 65, height: float = 4.0, jitter: float = 0.3, seed: int = 0):
    """Open unit-radius cylinder around the z axis, ``z`` in ``[-height/2, height/2]``,
    outward faces; ``jitter`` moves vertices (fraction of the spacing; the two rims stay
    flat) so the triangulation is irregular."""
    rng = np.random.default_rng(seed)
    u = np.arange(n_around) / n_around * 2 * np.pi
    z = np.linspace(-height / 2, height / 2, n_along)
    uu, zz = np.meshgrid(u, z, indexing="ij")
    uu = uu + rng.uniform(-jitter, jitter, uu.shape) * 2 * np.pi / n_around
    inner = np.abs(zz) < height / 2 - 1e-9
    zz = zz + inner * rng.uniform(-jitter, jitter, zz.shape) * height / (n_along - 1)
    V = np.stack([np.cos(uu), np.sin(uu), zz], -1).reshape(-1, 3)
    idx = np.arange(n_around * n_along).reshape(n_around, n_along)
    a, b = idx[:, :-1], np.roll(idx, -1, axis=0)[:, :-1]
    c, d = np.roll(idx, -1, axis=0)[:, 1:], idx[:, 1:]
    F = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return V, F.astype(np.int64)
