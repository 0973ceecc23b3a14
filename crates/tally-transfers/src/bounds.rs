//! Deterministic (Duncan–Davis) bounds.
//!
//! In a unit with row count `x_r`, column count `y_c` and total `N`, the cell `n_rc` satisfies
//! `max(0, x_r + y_c − N) <= n_rc <= min(x_r, y_c)` whatever the transfer. Summing the unit bounds
//! gives bounds for the aggregate cell; dividing by the row total gives bounds for the proportion.
//! Each cell's bounds are sharp on their own but not jointly.

use crate::data::{par_chunks, Data};
use serde::Serialize;

/// Aggregate bounds for every cell, in votes and as proportions of the row total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bounds {
    /// `lower_votes[r][c]`
    pub lower_votes: Vec<Vec<u64>>,
    pub upper_votes: Vec<Vec<u64>>,
    /// Proportions of the row total (0 for an empty row).
    pub lower: Vec<Vec<f64>>,
    pub upper: Vec<Vec<f64>>,
}

pub(crate) fn compute(d: &Data) -> Bounds {
    let (nr, nc) = (d.r, d.c);
    let parts = par_chunks(d.u, |_, a, b| {
        let mut lo = vec![0u64; nr * nc];
        let mut hi = vec![0u64; nr * nc];
        for u in a..b {
            let x = &d.xi[u * nr..(u + 1) * nr];
            let y = &d.yi[u * nc..(u + 1) * nc];
            let n: u64 = x.iter().sum();
            for i in 0..nr {
                for j in 0..nc {
                    lo[i * nc + j] += (x[i] + y[j]).saturating_sub(n);
                    hi[i * nc + j] += x[i].min(y[j]);
                }
            }
        }
        (lo, hi)
    });
    let mut lo = vec![0u64; nr * nc];
    let mut hi = vec![0u64; nr * nc];
    for (l, h) in parts {
        for k in 0..nr * nc {
            lo[k] += l[k];
            hi[k] += h[k];
        }
    }
    let grid = |v: &[u64]| -> Vec<Vec<u64>> {
        (0..nr).map(|i| v[i * nc..(i + 1) * nc].to_vec()).collect()
    };
    let prop = |v: &[u64]| -> Vec<Vec<f64>> {
        (0..nr)
            .map(|i| {
                (0..nc)
                    .map(|j| {
                        if d.row_tot[i] > 0.0 {
                            v[i * nc + j] as f64 / d.row_tot[i]
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect()
    };
    Bounds {
        lower_votes: grid(&lo),
        upper_votes: grid(&hi),
        lower: prop(&lo),
        upper: prop(&hi),
    }
}
