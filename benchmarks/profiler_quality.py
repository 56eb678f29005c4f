"""Test-retest agreement, spread and throughput per platform of a measured dataset.

Reads a CSV exported by `hwlat data export` (default: the shipped NB201 CPU dataset) in which some
architectures were measured twice, the second time with tag "retest". Spread is reported two ways:
`within_run_median_cv_%` is the median over architectures of the CV of the single-inference samples of one
measurement; `retest_median_cv_%` the median over architectures of the CV of the two medians measured in
separate runs (what matters when a dataset is reused); `retest_level_shift_%` the median ratio of retest
to first median, minus one (a shift of the whole platform), and `retest_ratio_min`/`_max` its extremes. `archs_per_min` counts the first run only.
Usage: python benchmarks/profiler_quality.py [CSV]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from scipy import stats

DEFAULT = Path(__file__).resolve().parents[1] / "data" / "nb201-cpu" / "measurements.csv"


def platform_quality(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per platform: test-retest Spearman, CVs, convergence and architectures per minute."""
    rows = []
    for platform, group in frame.groupby("platform"):
        first = group[group["tag"].fillna("") == ""].set_index("arch")
        retest = group[group["tag"] == "retest"].set_index("arch")
        both = first.index.intersection(retest.index)
        rho = stats.spearmanr(first.loc[both, "median_ms"], retest.loc[both, "median_ms"]).statistic if len(both) > 2 else float("nan")
        a, b = first.loc[both, "median_ms"], retest.loc[both, "median_ms"]
        rel_diff = (b - a).abs() / a
        pair_cv = 2 ** 0.5 * (b - a).abs() / (a + b)  # sample std over mean of the two medians
        created = pd.to_datetime(first["created_at"]).sort_values()
        minutes = (created.iloc[-1] - created.iloc[0]).total_seconds() / 60
        rows.append({
            "platform": platform,
            "archs": len(first),
            "retest_pairs": len(both),
            "retest_spearman": rho,
            "retest_median_abs_diff_%": 100 * rel_diff.median() if len(both) else float("nan"),
            "retest_median_cv_%": 100 * pair_cv.median() if len(both) else float("nan"),
            "retest_level_shift_%": 100 * ((b / a).median() - 1) if len(both) else float("nan"),
            "retest_ratio_min": (b / a).min() if len(both) else float("nan"),
            "retest_ratio_max": (b / a).max() if len(both) else float("nan"),
            "within_run_median_cv_%": 100 * first["cv"].median(),
            "median_ci_rel_%": 100 * first["ci_rel"].median(),
            "converged_%": 100 * first["converged"].astype(bool).mean(),
            "median_latency_ms": first["median_ms"].median(),
            "archs_per_min": (len(first) - 1) / minutes if minutes > 0 else float("nan"),
        })
    return pd.DataFrame(rows)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    frame = pd.read_csv(path)
    print(f"data: {path} ({len(frame)} records)")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        print(platform_quality(frame).to_string(index=False))


if __name__ == "__main__":
    main()
