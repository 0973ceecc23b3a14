#!/usr/bin/env python3
"""The integer-percentage test alone, vectorised with numpy: the peer `tally forensics` is timed
against (README, Performance). Same statistic and null as Tally's (crates/tally-forensics,
integer.rs): a station is a hit when its turnout or its leader's share, in percent, is within
+/-0.05 points of a whole percent 1..99, among stations with at least 100 ballots cast; the null
redraws cast ~ Bin(registered, turnout) and leader ~ Bin(valid, share) for every station, 1000
times. The leader is the candidate with the most votes in all.

    python3 scripts/integer_test_numpy.py ../shared/data/russia2018/r1.csv.gz

Reads the uniform CSV (plain or gzip) with pandas, prints the observed hits, the null's mean and
standard deviation, the one-sided p-value and the seconds spent on the test itself.
"""
import sys
import time

import numpy as np
import pandas as pd

def hits(k, n):
    """Exact integer arithmetic: |2000 k - 20 j n| <= n for the nearest whole percent j in 1..99."""
    k = k.astype(np.int64)
    n = n.astype(np.int64)
    ok = n > 0
    n_safe = np.where(ok, n, 1)
    j = (200 * k + n_safe) // (2 * n_safe)
    hit = np.abs(2000 * k - 20 * j * n_safe) <= n_safe
    return ok & (k <= n) & (j >= 1) & (j <= 99) & hit


def main(path, replicates=1000, min_voters=100, seed=1):
    df = pd.read_csv(path)
    # In the uniform CSV the candidates' columns follow `valid`.
    candidates = list(df.columns[list(df.columns).index("valid") + 1:])
    votes = df[candidates].to_numpy(dtype=np.int64)
    leader = int(np.argmax(votes.sum(axis=0)))
    registered = df["registered"].to_numpy(dtype=np.int64)
    cast = df["cast"].to_numpy(dtype=np.int64)
    valid = df["valid"].to_numpy(dtype=np.int64)
    lead = votes[:, leader]
    used = (cast >= min_voters) & (registered > 0) & (valid > 0) & (cast <= registered)
    registered, cast, valid, lead = registered[used], cast[used], valid[used], lead[used]
    turnout_checked = cast * 100 <= registered * 99
    share_checked = lead * 100 <= valid * 99

    def count(c, l):
        return int(np.sum((turnout_checked & hits(c, registered)) | (share_checked & hits(l, valid))))

    start = time.perf_counter()
    observed = count(cast, lead)
    rng = np.random.default_rng(seed)
    p_turnout = cast / registered
    p_share = lead / valid
    null = np.empty(replicates)
    for r in range(replicates):
        null[r] = count(rng.binomial(registered, p_turnout), rng.binomial(valid, p_share))
    seconds = time.perf_counter() - start
    p = (1 + np.sum(null >= observed)) / (replicates + 1)
    print(f"leader {candidates[leader]}; stations tested {used.sum()}")
    print(f"integer hits {observed}; null mean {null.mean():.1f} sd {null.std(ddof=1):.1f}; "
          f"p = {p:.4f} ({replicates} replicates)")
    print(f"test time {seconds:.2f} s")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
