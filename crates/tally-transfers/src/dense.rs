//! Dense solvers for the small master problems of the lphom level bundle method ([`crate::lp`]).
//!
//! Both problems live on the product of `R` simplices (the `R x C` transfer proportions, row-major)
//! and carry at most a few dozen cutting planes `g_k . z + h_k`, so they have about a hundred
//! variables and constraints: a sparse interior-point solver spends most of its time on setup and
//! factorisation there. A tableau simplex and a dual active-set method solve them exactly (up to
//! round-off) in a fraction of that time.
//!
//! * [`master_lp`]: `min t` subject to `t >= g_k . z + h_k`, `t >= 0`, `z` in the simplices, by the
//!   primal simplex method on a dense tableau from a feasible crash basis. Its lower bound is not
//!   read off the primal value but recomputed from the dual multipliers `mu` of the cuts: for any
//!   `mu >= 0` with `sum mu <= 1`, `sum_k mu_k h_k + sum_r min_c (sum_k mu_k g_k)_rc` is a lower
//!   bound of the model on the simplices (weak duality), whatever round-off the pivots left.
//! * [`level_projection`]: the Euclidean projection of a point onto the simplices intersected with
//!   `{g_k . z + h_k <= level}`, by the Goldfarb–Idnani dual active-set method (identity Hessian, so
//!   its factor `J` is just the orthogonal factor of the active constraints' normals).

/// Dense `R x C` simplex product with cutting planes `g . z + h`.
pub(crate) struct Cuts<'a> {
    pub nr: usize,
    pub nc: usize,
    /// Cut slopes, `g[k]` row-major `R x C`.
    pub g: &'a [&'a [f64]],
    pub h: &'a [f64],
}

/// Solution of the master LP.
pub(crate) struct MasterLp {
    /// Minimiser (a vertex), row-major `R x C`.
    pub z: Vec<f64>,
    /// Certified lower bound of `max(0, max_k g_k . z + h_k)` over the simplices (from the duals;
    /// equal to the primal optimum up to round-off).
    pub lower: f64,
}

/// Pivot magnitude below which a tableau entry is treated as zero.
const PIVOT_TOL: f64 = 1e-11;
/// Reduced cost below which a column improves the objective.
const COST_TOL: f64 = 1e-12;

/// `min t` over the simplices and the cuts (see module docs). `guide` (row-major `R x C`) picks the
/// starting vertex: the largest entry of each row. `None` if the simplex does not finish (cycling
/// guard or numerical trouble); the caller then has a fallback.
pub(crate) fn master_lp(cuts: &Cuts, guide: &[f64]) -> Option<MasterLp> {
    let (nr, nc) = (cuts.nr, cuts.nc);
    let np = nr * nc;
    let m = cuts.h.len();
    if m == 0 {
        return None;
    }
    // Columns: z (np), t, one slack per cut, then the right-hand side.
    let col_t = np;
    let col_s = np + 1;
    let width = np + 1 + m + 1;
    let rhs = width - 1;
    let rows = nr + m;
    let mut tab = vec![0.0; rows * width];
    for r in 0..nr {
        let row = &mut tab[r * width..(r + 1) * width];
        row[r * nc..(r + 1) * nc].iter_mut().for_each(|v| *v = 1.0);
        row[rhs] = 1.0;
    }
    for k in 0..m {
        let row = &mut tab[(nr + k) * width..(nr + k + 1) * width];
        row[..np].copy_from_slice(cuts.g[k]);
        row[col_t] = -1.0;
        row[col_s + k] = 1.0;
        row[rhs] = -cuts.h[k];
    }
    // Reduced costs (objective `t`) and `-objective` in the last entry.
    let mut obj = vec![0.0; width];
    obj[col_t] = 1.0;
    let mut basis: Vec<usize> = (0..rows)
        .map(|i| if i < nr { usize::MAX } else { col_s + i - nr })
        .collect();
    let mut prow = vec![0.0; width];

    // Crash basis: one vertex per simplex row, then `t` in the row of the most violated cut (or
    // left at zero when every cut is negative there): feasible, so no phase one is needed.
    for r in 0..nr {
        let g = &guide[r * nc..(r + 1) * nc];
        let j = (0..nc).fold(0, |b, j| if g[j] > g[b] { j } else { b });
        pivot(
            &mut tab,
            &mut obj,
            &mut basis,
            &mut prow,
            width,
            r,
            r * nc + j,
        );
    }
    let worst = (0..m).fold(nr, |b, k| {
        if tab[(nr + k) * width + rhs] < tab[b * width + rhs] {
            nr + k
        } else {
            b
        }
    });
    if tab[worst * width + rhs] < 0.0 {
        pivot(
            &mut tab, &mut obj, &mut basis, &mut prow, width, worst, col_t,
        );
    }
    for i in 0..rows {
        let v = &mut tab[i * width + rhs];
        if *v < -1e-9 {
            return None;
        }
        *v = v.max(0.0);
    }

    let mut is_basic = vec![false; width];
    basis.iter().for_each(|&b| is_basic[b] = true);
    let max_pivots = 50 * (rows + width);
    let mut degenerate_run = 0usize;
    let mut done = false;
    for _ in 0..max_pivots {
        // Dantzig's rule; Bland's (smallest index) after a run of degenerate pivots, which cannot
        // cycle.
        let bland = degenerate_run > 2 * rows;
        let mut enter = usize::MAX;
        let mut best = -COST_TOL;
        for c in 0..rhs {
            if obj[c] < best && !is_basic[c] {
                enter = c;
                if bland {
                    break;
                }
                best = obj[c];
            }
        }
        if enter == usize::MAX {
            done = true;
            break;
        }
        let mut leave = usize::MAX;
        let mut ratio = f64::INFINITY;
        for i in 0..rows {
            let a = tab[i * width + enter];
            if a > PIVOT_TOL {
                let q = tab[i * width + rhs] / a;
                let better = q < ratio - 1e-14
                    || (q <= ratio + 1e-14
                        && leave != usize::MAX
                        && if bland {
                            basis[i] < basis[leave]
                        } else {
                            a > tab[leave * width + enter]
                        });
                if leave == usize::MAX || better {
                    leave = i;
                    ratio = q;
                }
            }
        }
        if leave == usize::MAX {
            // Unbounded: impossible for a bounded feasible problem, so numerical trouble.
            return None;
        }
        degenerate_run = if ratio <= 1e-14 {
            degenerate_run + 1
        } else {
            0
        };
        is_basic[basis[leave]] = false;
        is_basic[enter] = true;
        pivot(
            &mut tab, &mut obj, &mut basis, &mut prow, width, leave, enter,
        );
    }
    if !done {
        return None;
    }
    let mut z = vec![0.0; np];
    for (i, &b) in basis.iter().enumerate() {
        if b < np {
            z[b] = tab[i * width + rhs].max(0.0);
        }
    }
    let mu: Vec<f64> = (0..m).map(|k| obj[col_s + k].max(0.0)).collect();
    Some(MasterLp {
        z,
        lower: dual_bound(cuts, &mu),
    })
}

/// Lower bound of `max(0, max_k g_k . z + h_k)` over the simplices from multipliers `mu >= 0`
/// (scaled down to `sum mu <= 1`): `sum_k mu_k h_k + sum_r min_c (sum_k mu_k g_k)_rc`, and 0.
pub(crate) fn dual_bound(cuts: &Cuts, mu: &[f64]) -> f64 {
    let (nr, nc) = (cuts.nr, cuts.nc);
    let total: f64 = mu.iter().sum();
    let scale = if total > 1.0 { 1.0 / total } else { 1.0 };
    let mut agg = vec![0.0; nr * nc];
    let mut bound = 0.0;
    for (k, &w) in mu.iter().enumerate() {
        let w = w * scale;
        if w > 0.0 {
            bound += w * cuts.h[k];
            for (a, &g) in agg.iter_mut().zip(cuts.g[k]) {
                *a += w * g;
            }
        }
    }
    for r in 0..nr {
        bound += agg[r * nc..(r + 1) * nc]
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
    }
    bound.max(0.0)
}

/// Gauss–Jordan pivot on `(row, col)` of the tableau and the reduced-cost row.
fn pivot(
    tab: &mut [f64],
    obj: &mut [f64],
    basis: &mut [usize],
    prow: &mut [f64],
    width: usize,
    row: usize,
    col: usize,
) {
    let a = tab[row * width + col];
    for (p, &v) in prow.iter_mut().zip(&tab[row * width..(row + 1) * width]) {
        *p = v / a;
    }
    prow[col] = 1.0;
    for (i, r) in tab.chunks_exact_mut(width).enumerate() {
        if i == row {
            r.copy_from_slice(prow);
            continue;
        }
        let f = r[col];
        if f != 0.0 {
            for (v, &p) in r.iter_mut().zip(prow.iter()) {
                *v -= f * p;
            }
            r[col] = 0.0;
        }
    }
    let f = obj[col];
    if f != 0.0 {
        for (v, &p) in obj.iter_mut().zip(prow.iter()) {
            *v -= f * p;
        }
        obj[col] = 0.0;
    }
    basis[row] = col;
}

/// A constraint `n . x >= b` (or `= b`) of the projection problem, with `n` given sparsely by kind.
#[derive(Clone, Copy)]
enum Con {
    /// `sum_c x_rc = 1` for simplex row `r`.
    RowSum(usize),
    /// `x_i >= 0`.
    Nonneg(usize),
    /// `-(g_k . x) >= h_k - level`.
    Cut(usize),
}

/// Goldfarb–Idnani state for `min 1/2 |x - center|^2` (identity Hessian).
struct ActiveSet<'a> {
    n: usize,
    cuts: &'a Cuts<'a>,
    level: f64,
    /// Orthogonal `n x n`, column-major: the first `q` columns span the active normals.
    j: Vec<f64>,
    /// Upper triangular `q x q` factor (column-major in an `n x n` buffer): active normals = `J R`.
    r: Vec<f64>,
    active: Vec<Con>,
    /// Membership flags of `active`, by [`ActiveSet::index`].
    in_active: Vec<bool>,
    u: Vec<f64>,
}

impl ActiveSet<'_> {
    fn normal(&self, c: Con, out: &mut [f64]) {
        out.iter_mut().for_each(|v| *v = 0.0);
        match c {
            Con::RowSum(r) => out[r * self.cuts.nc..(r + 1) * self.cuts.nc]
                .iter_mut()
                .for_each(|v| *v = 1.0),
            Con::Nonneg(i) => out[i] = 1.0,
            Con::Cut(k) => {
                for (o, &g) in out.iter_mut().zip(self.cuts.g[k]) {
                    *o = -g;
                }
            }
        }
    }

    /// Slack `n . x - b` (negative: violated).
    fn slack(&self, c: Con, x: &[f64]) -> f64 {
        let nc = self.cuts.nc;
        match c {
            Con::RowSum(r) => x[r * nc..(r + 1) * nc].iter().sum::<f64>() - 1.0,
            Con::Nonneg(i) => x[i],
            Con::Cut(k) => {
                let gx: f64 = self.cuts.g[k].iter().zip(x).map(|(a, b)| a * b).sum();
                self.level - self.cuts.h[k] - gx
            }
        }
    }

    /// Position of `c` in `in_active`.
    fn index(&self, c: Con) -> usize {
        match c {
            Con::RowSum(r) => r,
            Con::Nonneg(i) => self.cuts.nr + i,
            Con::Cut(k) => self.cuts.nr + self.n + k,
        }
    }

    fn is_active(&self, c: Con) -> bool {
        self.in_active[self.index(c)]
    }

    fn is_equality(c: Con) -> bool {
        matches!(c, Con::RowSum(_))
    }

    /// `d = J^T n`.
    fn project(&self, nv: &[f64], d: &mut [f64]) {
        let n = self.n;
        for (col, dc) in d.iter_mut().enumerate() {
            *dc = self.j[col * n..(col + 1) * n]
                .iter()
                .zip(nv)
                .map(|(a, b)| a * b)
                .sum();
        }
    }

    /// Rotates columns `a` and `b` of `J` by `(c, s)`: `J_a <- c J_a + s J_b`, `J_b <- -s J_a + c J_b`.
    fn rotate_j(&mut self, a: usize, b: usize, c: f64, s: f64) {
        let n = self.n;
        for i in 0..n {
            let (ja, jb) = (self.j[a * n + i], self.j[b * n + i]);
            self.j[a * n + i] = c * ja + s * jb;
            self.j[b * n + i] = -s * ja + c * jb;
        }
    }

    /// Appends constraint `c` whose `d = J^T n` is given (destroyed).
    fn add(&mut self, c: Con, d: &mut [f64], mult: f64) {
        let (n, q) = (self.n, self.active.len());
        for i in (q + 1..n).rev() {
            let (a, b) = (d[i - 1], d[i]);
            if b == 0.0 {
                continue;
            }
            let h = a.hypot(b);
            let (cs, sn) = (a / h, b / h);
            d[i - 1] = h;
            d[i] = 0.0;
            self.rotate_j(i - 1, i, cs, sn);
        }
        self.r[q * n..q * n + q + 1].copy_from_slice(&d[..q + 1]);
        let idx = self.index(c);
        self.in_active[idx] = true;
        self.active.push(c);
        self.u.push(mult);
    }

    /// Removes the active constraint at position `l` and restores the triangular factor.
    fn drop(&mut self, l: usize) {
        let (n, q) = (self.n, self.active.len());
        let idx = self.index(self.active[l]);
        self.in_active[idx] = false;
        self.active.remove(l);
        self.u.remove(l);
        // Shift columns l+1.. of R left: upper Hessenberg from column l on.
        for col in l..q - 1 {
            let (dst, src) = (col * n, (col + 1) * n);
            self.r.copy_within(src..src + col + 2, dst);
        }
        for i in 0..n {
            self.r[(q - 1) * n + i] = 0.0;
        }
        for col in l..q - 1 {
            let (a, b) = (self.r[col * n + col], self.r[col * n + col + 1]);
            if b == 0.0 {
                continue;
            }
            let h = a.hypot(b);
            let (cs, sn) = (a / h, b / h);
            for k in col..q - 1 {
                let (ra, rb) = (self.r[k * n + col], self.r[k * n + col + 1]);
                self.r[k * n + col] = cs * ra + sn * rb;
                self.r[k * n + col + 1] = -sn * ra + cs * rb;
            }
            self.r[col * n + col + 1] = 0.0;
            self.rotate_j(col, col + 1, cs, sn);
        }
    }
}

/// Scaled violation (`n . x - b` over `|n|`) above which a constraint is added to the active set.
const VIOLATION_TOL: f64 = 1e-11;

/// Outcome of [`level_projection`].
pub(crate) enum Projection {
    Point(Vec<f64>),
    /// The level set is empty: a violated constraint whose normal is a combination of the active
    /// equalities and inequalities with multipliers that cannot be released (Farkas).
    Empty,
    /// The step limit was reached (numerical trouble); the caller has a fallback.
    Failed,
}

/// Euclidean projection of `center` onto `{z in the simplices : g_k . z + h_k <= level}`.
pub(crate) fn level_projection(cuts: &Cuts, level: f64, center: &[f64]) -> Projection {
    let (nr, nc) = (cuts.nr, cuts.nc);
    let n = nr * nc;
    let m = cuts.h.len();
    let mut st = ActiveSet {
        n,
        cuts,
        level,
        j: vec![0.0; n * n],
        r: vec![0.0; n * n],
        active: Vec::with_capacity(n),
        in_active: vec![false; nr + n + m],
        u: Vec::with_capacity(n),
    };
    for i in 0..n {
        st.j[i * n + i] = 1.0;
    }
    let mut x = center.to_vec();
    let mut nv = vec![0.0; n];
    let mut d = vec![0.0; n];
    let mut z = vec![0.0; n];
    let mut rdir = vec![0.0; n];
    let cut_norm: Vec<f64> = (0..m)
        .map(|k| cuts.g[k].iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect();
    let norm = |c: Con| match c {
        Con::RowSum(_) => (nc as f64).sqrt(),
        Con::Nonneg(_) => 1.0,
        Con::Cut(k) => cut_norm[k],
    };
    let max_steps = 20 * (n + nr + m) + 100;
    let mut steps = 0;
    let mut next_row = 0;
    loop {
        // Equalities first (never dropped), then the most violated inequality (scaled by the
        // normal's length).
        let pick = if next_row < nr {
            next_row += 1;
            Some(Con::RowSum(next_row - 1))
        } else {
            let mut worst: Option<(Con, f64)> = None;
            let cands = (0..n).map(Con::Nonneg).chain((0..m).map(Con::Cut));
            for c in cands {
                if st.is_active(c) {
                    continue;
                }
                let nn = norm(c);
                if nn == 0.0 {
                    continue;
                }
                let v = st.slack(c, &x) / nn;
                if v < -VIOLATION_TOL && worst.is_none_or(|(_, w)| v < w) {
                    worst = Some((c, v));
                }
            }
            worst.map(|(c, _)| c)
        };
        let Some(p) = pick else {
            return Projection::Point(x);
        };
        st.normal(p, &mut nv);
        let mut s = st.slack(p, &x);
        // An equality is added from the side it is violated on (its multiplier is free).
        let sign = if ActiveSet::is_equality(p) && s > 0.0 {
            -1.0
        } else {
            1.0
        };
        nv.iter_mut().for_each(|v| *v *= sign);
        s *= sign;
        let n_norm = norm(p);
        let mut u_plus = 0.0;
        loop {
            steps += 1;
            if steps > max_steps {
                return Projection::Failed;
            }
            let q = st.active.len();
            st.project(&nv, &mut d);
            // Primal direction z = J2 J2^T n, dual direction r = R^{-1} J1^T n.
            z.iter_mut().for_each(|v| *v = 0.0);
            for (col, &dc) in d.iter().enumerate().skip(q) {
                if dc != 0.0 {
                    for (zi, &ji) in z.iter_mut().zip(&st.j[col * n..(col + 1) * n]) {
                        *zi += dc * ji;
                    }
                }
            }
            for i in (0..q).rev() {
                let mut v = d[i];
                for k in i + 1..q {
                    v -= st.r[k * n + i] * rdir[k];
                }
                rdir[i] = v / st.r[i * n + i];
            }
            let mut t1 = f64::INFINITY;
            let mut drop_at = usize::MAX;
            for i in 0..q {
                if !ActiveSet::is_equality(st.active[i]) && rdir[i] > 1e-14 {
                    let v = st.u[i] / rdir[i];
                    if v < t1 {
                        t1 = v;
                        drop_at = i;
                    }
                }
            }
            let d2: f64 = d[q..].iter().map(|v| v * v).sum();
            let t2 = if d2.sqrt() <= 1e-12 * n_norm {
                f64::INFINITY
            } else {
                -s / d2
            };
            let t = t1.min(t2);
            if t == f64::INFINITY {
                // The new constraint cannot be satisfied with the active ones: empty set.
                return Projection::Empty;
            }
            for i in 0..q {
                st.u[i] -= t * rdir[i];
            }
            u_plus += t;
            if t2 < f64::INFINITY {
                for (xi, zi) in x.iter_mut().zip(&z) {
                    *xi += t * zi;
                }
            }
            if t2 <= t1 {
                st.add(p, &mut d, u_plus);
                break;
            }
            st.drop(drop_at);
            s = sign * st.slack(p, &x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn projection_of_a_point_inside_is_itself() {
        let g = [vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0]];
        let gr: Vec<&[f64]> = g.iter().map(|v| v.as_slice()).collect();
        let cuts = Cuts {
            nr: 2,
            nc: 3,
            g: &gr,
            h: &[0.0],
        };
        let c = [0.2, 0.3, 0.5, 0.1, 0.1, 0.8];
        let Projection::Point(z) = level_projection(&cuts, 1.0, &c) else {
            panic!("feasible")
        };
        for (a, b) in z.iter().zip(&c) {
            assert!((a - b).abs() < 1e-14);
        }
    }

    #[test]
    fn projection_onto_simplex_matches_closed_form() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let nc = rng.gen_range(2..7);
            let c: Vec<f64> = (0..nc).map(|_| rng.gen_range(-1.0..1.5)).collect();
            let g = [vec![0.0; nc]];
            let gr: Vec<&[f64]> = g.iter().map(|v| v.as_slice()).collect();
            let cuts = Cuts {
                nr: 1,
                nc,
                g: &gr,
                h: &[0.0],
            };
            let Projection::Point(z) = level_projection(&cuts, 1.0, &c) else {
                panic!("feasible")
            };
            // Sort-based simplex projection.
            let mut s = c.clone();
            s.sort_by(|a, b| b.total_cmp(a));
            let mut acc = 0.0;
            let mut theta = 0.0;
            for (i, v) in s.iter().enumerate() {
                acc += v;
                let th = (acc - 1.0) / (i + 1) as f64;
                if v - th > 0.0 {
                    theta = th;
                }
            }
            for (zi, ci) in z.iter().zip(&c) {
                assert!((zi - (ci - theta).max(0.0)).abs() < 1e-12, "{z:?} {c:?}");
            }
        }
    }
}
