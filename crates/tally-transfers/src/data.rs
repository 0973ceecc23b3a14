//! Flat numeric view of [`Margins`] shared by the estimators, plus small helpers
//! (deterministic seeding, deterministic parallel reduction).

use crate::input::Margins;
use rayon::prelude::*;

/// Units per parallel chunk. Fixed (not derived from the thread count) so that results do not
/// depend on scheduling: chunk partial sums are reduced in chunk order.
pub(crate) const CHUNK: usize = 1024;

/// Largest number of rows or columns accepted (keeps per-unit work on the stack).
pub const MAX_DIM: usize = 64;

/// Row-major flat copy of the margins, zero-total units removed.
pub(crate) struct Data {
    pub u: usize,
    pub r: usize,
    pub c: usize,
    /// `x[u * r + i]` row counts.
    pub x: Vec<f64>,
    /// `y[u * c + j]` column counts.
    pub y: Vec<f64>,
    /// Integer copies (for the bounds).
    pub xi: Vec<u64>,
    pub yi: Vec<u64>,
    /// Index into `Margins::unit_ids` of each kept unit.
    pub kept: Vec<usize>,
    /// Units with zero voters (dropped: they carry no information).
    pub empty: usize,
    /// Row totals over units.
    pub row_tot: Vec<f64>,
    /// Column totals over units.
    pub col_tot: Vec<f64>,
    /// Grand total.
    pub total: f64,
}

impl Data {
    pub fn new(m: &Margins) -> Data {
        let (r, c) = (m.rows.len(), m.cols.len());
        let mut d = Data {
            u: 0,
            r,
            c,
            x: Vec::with_capacity(m.len() * r),
            y: Vec::with_capacity(m.len() * c),
            xi: Vec::with_capacity(m.len() * r),
            yi: Vec::with_capacity(m.len() * c),
            kept: Vec::with_capacity(m.len()),
            empty: 0,
            row_tot: vec![0.0; r],
            col_tot: vec![0.0; c],
            total: 0.0,
        };
        for u in 0..m.len() {
            let t: u64 = m.row_counts[u].iter().sum();
            if t == 0 {
                d.empty += 1;
                continue;
            }
            d.kept.push(u);
            for (i, &v) in m.row_counts[u].iter().enumerate() {
                d.xi.push(v);
                d.x.push(v as f64);
                d.row_tot[i] += v as f64;
            }
            for (j, &v) in m.col_counts[u].iter().enumerate() {
                d.yi.push(v);
                d.y.push(v as f64);
                d.col_tot[j] += v as f64;
            }
            d.total += t as f64;
        }
        d.u = d.kept.len();
        d
    }

    /// Every `step`-th unit (deterministic subsample; totals recomputed).
    pub fn subsample(&self, step: usize) -> Data {
        let idx: Vec<usize> = (0..self.u).step_by(step.max(1)).collect();
        self.select(&idx)
    }

    /// The units `idx` (repeats allowed: a bootstrap resample), totals recomputed.
    pub fn select(&self, idx: &[usize]) -> Data {
        let (r, c) = (self.r, self.c);
        let mut d = Data {
            u: idx.len(),
            r,
            c,
            x: Vec::with_capacity(idx.len() * r),
            y: Vec::with_capacity(idx.len() * c),
            xi: Vec::with_capacity(idx.len() * r),
            yi: Vec::with_capacity(idx.len() * c),
            kept: idx.iter().map(|&u| self.kept[u]).collect(),
            empty: 0,
            row_tot: vec![0.0; r],
            col_tot: vec![0.0; c],
            total: 0.0,
        };
        for &u in idx {
            for i in 0..r {
                let v = self.x[u * r + i];
                d.x.push(v);
                d.xi.push(self.xi[u * r + i]);
                d.row_tot[i] += v;
                d.total += v;
            }
            for j in 0..c {
                let v = self.y[u * c + j];
                d.y.push(v);
                d.yi.push(self.yi[u * c + j]);
                d.col_tot[j] += v;
            }
        }
        d
    }

    pub fn xu(&self, u: usize) -> &[f64] {
        &self.x[u * self.r..(u + 1) * self.r]
    }

    pub fn yu(&self, u: usize) -> &[f64] {
        &self.y[u * self.c..(u + 1) * self.c]
    }
}

/// Maps each chunk of units `[start, end)` through `f` in parallel and returns the results in
/// chunk order (so a sequential fold over them is deterministic).
pub(crate) fn par_chunks<T: Send>(
    units: usize,
    f: impl Fn(usize, usize, usize) -> T + Sync,
) -> Vec<T> {
    let n_chunks = units.div_ceil(CHUNK);
    if n_chunks <= 1 {
        // One chunk: no thread hand-off (the iterative methods call this thousands of times).
        return (0..n_chunks).map(|k| f(k, 0, units)).collect();
    }
    (0..n_chunks)
        .into_par_iter()
        .map(|k| f(k, k * CHUNK, ((k + 1) * CHUNK).min(units)))
        .collect()
}

/// SplitMix64 finaliser: a well-mixed 64-bit hash used to derive independent seeds.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seed for stream `parts` under the user seed.
pub(crate) fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    parts.iter().fold(mix(seed), |h, &p| mix(h ^ mix(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_seeds_differ() {
        let a = derive_seed(1, &[0, 0]);
        let b = derive_seed(1, &[0, 1]);
        let c = derive_seed(2, &[0, 0]);
        assert!(a != b && a != c && b != c);
    }
}
