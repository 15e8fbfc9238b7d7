"""The one decorator for jitted code. Only modules under nfreplay/replay/ use it.

njit(cache=True, nogil=True); no fastmath (exactness), no parallel (order matters).
Under NUMBA_DISABLE_JIT=1 numba returns the plain Python function, which the test suite uses
for coverage of kernel code.
"""

from __future__ import annotations

import numba

kernel = numba.njit(cache=True, nogil=True)

__all__ = ["kernel"]
