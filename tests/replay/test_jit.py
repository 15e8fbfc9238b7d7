"""The low-level helpers of nfreplay.replay._jit: borrow, prefetch, kernel_norc.

They change no result by design (borrow strips reference counts, prefetch is a cache hint, kernel_norc
compiles without reference counting): these tests pin that down, jitted and under NUMBA_DISABLE_JIT.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from nfreplay.replay._jit import borrow, prefetch

_jit = numba.njit(nogil=True)
_jit_norc = numba.njit(nogil=True, _nrt=False)


@_jit_norc
def _prefetch_then_sum(E, H, idx):
    """Hints for every row of E and for H at arbitrary (in-range) positions, then a plain sum."""
    for r in range(E.shape[0]):
        prefetch(E, r * E.shape[1])
    for i in idx:
        prefetch(H, i)
    return E.sum() + H.sum()


@_jit
def _borrowed(E, i, j, v):
    B = borrow(E)
    B[i, j] = v  # a borrowed array is the same memory
    return B.sum()


def test_prefetch_is_only_a_hint():
    E = np.arange(24, dtype=np.int64).reshape(6, 4)
    H = np.arange(8, dtype=np.int64)
    before = (E.copy(), H.copy())
    assert _prefetch_then_sum(E, H, np.array([7, 0, 3, 3], np.int64)) == int(E.sum() + H.sum())
    assert np.array_equal(E, before[0]) and np.array_equal(H, before[1])


def test_borrow_is_the_same_memory():
    E = np.zeros((2, 5), np.int64)
    assert _borrowed(E, 1, 4, 9) == 9
    assert E[1, 4] == 9


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="numba's own check: only compiled code has NRT")
def test_norc_kernel_refuses_to_allocate():
    @numba.njit(_nrt=False)
    def alloc(n):
        return np.zeros(n, np.int64)

    with pytest.raises(Exception, match="NRT required|Only accept returning"):
        alloc(3)
