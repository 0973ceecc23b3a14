#!/usr/bin/env python3
"""The work `tally results FILE --format json` does, in polars or pandas, for `tally bench --peers`:
read the CSV, check every sheet (candidate votes add up to valid, valid + invalid = cast,
cast <= registered), and total the counted sheets by each area level and overall.

Usage: peer_bench.py polars|pandas FILE
"""
import sys

lib, path = sys.argv[1], sys.argv[2]
CORE = ["registered", "cast", "invalid", "valid"]

if lib == "polars":
    import polars as pl

    df = pl.read_csv(path)
    cols = df.columns
    cands = [c for c in cols[cols.index("valid") + 1:]]
    areas = [c for c in cols[:cols.index("registered")] if c not in ("round", "station_id")]
    ok = (
        (pl.sum_horizontal(cands) == pl.col("valid"))
        & (pl.col("valid") + pl.col("invalid") == pl.col("cast"))
        & (pl.col("cast") <= pl.col("registered"))
    )
    good = df.filter(ok)
    for i in range(1, len(areas) + 1):
        good.group_by(areas[:i]).agg([pl.col(c).sum() for c in CORE + cands])
    good.select([pl.col(c).sum() for c in CORE + cands])
elif lib == "pandas":
    import pandas as pd

    df = pd.read_csv(path)
    cols = list(df.columns)
    cands = cols[cols.index("valid") + 1:]
    areas = [c for c in cols[:cols.index("registered")] if c not in ("round", "station_id")]
    ok = (
        (df[cands].sum(axis=1) == df["valid"])
        & (df["valid"] + df["invalid"] == df["cast"])
        & (df["cast"] <= df["registered"])
    )
    good = df[ok]
    for i in range(1, len(areas) + 1):
        good.groupby(areas[:i])[CORE + cands].sum()
    good[CORE + cands].sum()
else:
    sys.exit(f"unknown library {lib}")
