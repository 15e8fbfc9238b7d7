"""frames._Addresses / replay.tables.address_codes: a column coded `like` an earlier one (rows equal to the
reference row's address reuse its code) gets the same codes and texts as one coded on its own."""

from __future__ import annotations

import numpy as np
import pytest

from nfreplay.analysis import frames
from nfreplay.replay import addr


def _columns(rng, n):
    fam = rng.choice(np.array([0, 4, 6], np.uint8), n, p=[0.05, 0.7, 0.25])
    pool4 = rng.integers(0, 40, 200).astype(np.uint64) | np.uint64(0x0A000000)
    hi = np.where(fam == 6, np.uint64(0x20010DB800000000) + rng.integers(0, 3, n).astype(np.uint64), np.uint64(0))
    lo = np.where(fam == 6, rng.integers(0, 30, n).astype(np.uint64),
                  np.uint64(addr.V4_MAPPED_LO) | pool4[rng.integers(0, 200, n)])
    # the translated column: equal to the reference on most rows, another address (or junk in the
    # ignored high bits of an IPv4 row) on the others
    ohi, olo = hi.copy(), lo.copy()
    k = rng.random(n) < 0.3
    olo[k] = np.where(fam[k] == 6, olo[k] + np.uint64(1000), np.uint64(addr.V4_MAPPED_LO) | np.uint64(0xC6336401))
    j = (rng.random(n) < 0.1) & (fam == 4)
    ohi[j] = np.uint64(7)  # IPv4 keys ignore hi: still the reference's address
    return fam, hi, lo, ohi, olo


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("with_valid", [False, True])
def test_like_gives_the_same_codes_and_texts(seed, with_valid):
    rng = np.random.default_rng(seed)
    n = 5000
    fam, hi, lo, ohi, olo = _columns(rng, n)
    valid = rng.random(n) < 0.8 if with_valid else None
    ref_valid = rng.random(n) < 0.9  # the reference has its own invalid rows (code 0)

    a = frames._Addresses()
    r = a.add(hi, lo, fam, ref_valid)
    a.add(ohi, olo, fam, valid, like=r)
    b = frames._Addresses()
    b.add(hi, lo, fam, ref_valid)
    b.add(ohi, olo, fam, valid)
    assert np.array_equal(a.codes[1], b.codes[1])
    assert [c.to_pylist() for c in a.columns()] == [c.to_pylist() for c in b.columns()]
    want = frames.addresses_text(ohi, olo, fam, valid).tolist()
    assert a.columns()[1].to_pylist() == want
