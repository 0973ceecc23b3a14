//! Linear-programming estimators of the lphom family.
//!
//! **lphom.** Global row proportions `P` (each row on the simplex), unit residuals
//! `e_uc = sum_r x_ur P_rc − y_uc`, minimise `sum_uc |e_uc|`.
//!
//! Two solvers give the same optimum:
//! * [`lphom_exact`]: the textbook LP with split residuals `e = e⁺ − e⁻` (`R·C + 2·U·C` variables),
//!   handed to Clarabel's sparse interior-point solver. Used for small inputs and as the reference
//!   in tests.
//! * [`lphom_bundle`]: the objective is a convex piecewise-linear function of only `R·C` numbers, and
//!   one pass over the data gives its value and a subgradient. A level bundle method (cutting planes
//!   with a proximal level projection) minimises it over the product of simplices. Its small master
//!   LP and QP are solved by the dense exact solvers of [`crate::dense`] (a tableau simplex and a
//!   dual active-set method: Clarabel spent ~7 ms on each, most of Poland 2020's time, against
//!   under 1 ms); Clarabel remains their fallback. Each master problem yields a lower bound, so the method stops with a
//!   certified optimality gap (reported). Memory is `O(R·C·iterations)` besides the data, and the
//!   per-iteration cost is one parallel pass over the units.
//!
//! **Unit-level refinement (tslphom / nslphom kind).** Given a global `P`, each unit gets the cell
//! table closest in L1 to its "homogeneous" table `t_rc = x_r P_rc` among all tables with the unit's
//! exact margins. That LP is degenerate; its optimal value is always `sum_c |y_c − ŷ_c|`
//! (`ŷ_c = sum_r t_rc`) and is attained by every table that only lowers cells of surplus columns and
//! only raises cells of deficit columns. We pick, in closed form, the member that lowers each surplus
//! column proportionally to `t` and spreads each row's freed votes over the deficit columns in
//! proportion to their deficits. tslphom = one refinement of the lphom `P`; nslphom repeats with `P`
//! re-estimated from the aggregated unit tables until it stops moving.

use crate::data::{par_chunks, Data, CHUNK, MAX_DIM};
use clarabel::algebra::CscMatrix;
use clarabel::solver::{
    DefaultSettingsBuilder, DefaultSolver, IPSolver, NonnegativeConeT, SolverStatus,
    SupportedConeT, ZeroConeT,
};

/// A solved lphom problem.
#[derive(Debug, Clone)]
pub(crate) struct LpFit {
    /// Row-major `R x C` proportions.
    pub p: Vec<f64>,
    /// Optimal `sum |e|` in votes.
    pub objective: f64,
    /// Certified gap (votes) between `objective` and a lower bound on the optimum (0 for the exact LP
    /// when Clarabel reports success).
    pub gap: f64,
    pub iterations: usize,
    pub solver: &'static str,
}

/// Objective value (votes) and a subgradient (row-major `R x C`) at `p`.
pub(crate) fn eval(d: &Data, p: &[f64]) -> (f64, Vec<f64>) {
    let (nr, nc) = (d.r, d.c);
    let parts = par_chunks(d.u, |_, a, b| {
        let mut f = 0.0;
        let mut g = vec![0.0; nr * nc];
        let mut fit = vec![0.0; nc];
        for u in a..b {
            let x = d.xu(u);
            let y = d.yu(u);
            fit.iter_mut().for_each(|v| *v = 0.0);
            for (i, &xi) in x.iter().enumerate() {
                if xi != 0.0 {
                    let row = &p[i * nc..(i + 1) * nc];
                    for j in 0..nc {
                        fit[j] += xi * row[j];
                    }
                }
            }
            for j in 0..nc {
                let e = fit[j] - y[j];
                f += e.abs();
                let s = if e > 0.0 {
                    1.0
                } else if e < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                if s != 0.0 {
                    for (i, &xi) in x.iter().enumerate() {
                        g[i * nc + j] += s * xi;
                    }
                }
            }
        }
        (f, g)
    });
    let mut f = 0.0;
    let mut g = vec![0.0; nr * nc];
    for (pf, pg) in parts {
        f += pf;
        for (a, b) in g.iter_mut().zip(pg) {
            *a += b;
        }
    }
    (f, g)
}

fn clarabel_solve(
    nvar: usize,
    p_diag: Option<f64>,
    q: &[f64],
    trip: (Vec<usize>, Vec<usize>, Vec<f64>),
    b: &[f64],
    n_eq: usize,
    n_ineq: usize,
) -> Option<Vec<f64>> {
    let m = b.len();
    let pm = match p_diag {
        Some(w) => CscMatrix::new_from_triplets(
            nvar,
            nvar,
            (0..nvar).collect(),
            (0..nvar).collect(),
            vec![w; nvar],
        ),
        None => CscMatrix::zeros((nvar, nvar)),
    };
    let a = CscMatrix::new_from_triplets(m, nvar, trip.0, trip.1, trip.2);
    let cones: Vec<SupportedConeT<f64>> = vec![ZeroConeT(n_eq), NonnegativeConeT(n_ineq)];
    let settings = DefaultSettingsBuilder::default()
        .verbose(false)
        .max_iter(200)
        .build()
        .ok()?;
    let mut solver = DefaultSolver::new(&pm, q, &a, b, &cones, settings).ok()?;
    solver.solve();
    match solver.solution.status {
        SolverStatus::Solved | SolverStatus::AlmostSolved => Some(solver.solution.x.clone()),
        _ => None,
    }
}

/// The full sparse LP (reference solver). `None` if Clarabel fails.
pub(crate) fn lphom_exact(d: &Data) -> Option<LpFit> {
    lphom_exact_weighted(d, None)
}

/// The sparse LP with unit `u`'s absolute residuals weighted by `w[u]` (a bootstrap resample
/// passes each distinct unit once with its multiplicity: the same optimum as the resample with
/// its repeats, from an LP about 1.6 times smaller). The reported objective is the weighted one.
pub(crate) fn lphom_exact_weighted(d: &Data, w: Option<&[f64]>) -> Option<LpFit> {
    let (nr, nc, nu) = (d.r, d.c, d.u);
    let np = nr * nc;
    let ne = nu * nc;
    let nvar = np + 2 * ne;
    let s = 1.0 / d.total;
    let (mut ri, mut ci, mut v) = (Vec::new(), Vec::new(), Vec::new());
    let mut b = Vec::with_capacity(nr + ne + nvar);
    // Row-sum equalities.
    for i in 0..nr {
        for j in 0..nc {
            ri.push(i);
            ci.push(i * nc + j);
            v.push(1.0);
        }
        b.push(1.0);
    }
    // Residual equalities: sum_i x_ui z_ij - e+_uj + e-_uj = y_uj.
    for u in 0..nu {
        let x = d.xu(u);
        let y = d.yu(u);
        for j in 0..nc {
            let row = nr + u * nc + j;
            for (i, &xi) in x.iter().enumerate() {
                if xi != 0.0 {
                    ri.push(row);
                    ci.push(i * nc + j);
                    v.push(xi * s);
                }
            }
            ri.push(row);
            ci.push(np + u * nc + j);
            v.push(-1.0);
            ri.push(row);
            ci.push(np + ne + u * nc + j);
            v.push(1.0);
            b.push(y[j] * s);
        }
    }
    let n_eq = nr + ne;
    // Nonnegativity of every variable.
    for k in 0..nvar {
        ri.push(n_eq + k);
        ci.push(k);
        v.push(-1.0);
        b.push(0.0);
    }
    let mut q = vec![0.0; nvar];
    for (k, x) in q[np..].iter_mut().enumerate() {
        // Variable np + k is e+ (k < ne) or e- (k >= ne) of unit (k mod ne) / nc.
        *x = w.map_or(1.0, |w| w[(k % ne) / nc]);
    }
    let x = clarabel_solve(nvar, None, &q, (ri, ci, v), &b, n_eq, nvar)?;
    let p = normalise_rows(&x[..np], nr, nc);
    let f = match w {
        None => eval(d, &p).0,
        Some(w) => {
            let mut f = 0.0;
            for u in 0..nu {
                let (x, y) = (d.xu(u), d.yu(u));
                for j in 0..nc {
                    let e: f64 = (0..nr).map(|i| x[i] * p[i * nc + j]).sum::<f64>() - y[j];
                    f += w[u] * e.abs();
                }
            }
            f
        }
    };
    Some(LpFit {
        p,
        objective: f,
        gap: 0.0,
        iterations: 1,
        solver: "clarabel sparse LP",
    })
}

fn normalise_rows(z: &[f64], nr: usize, nc: usize) -> Vec<f64> {
    let mut p: Vec<f64> = z.iter().map(|v| v.max(0.0)).collect();
    for i in 0..nr {
        let s: f64 = p[i * nc..(i + 1) * nc].iter().sum();
        for j in 0..nc {
            p[i * nc + j] = if s > 0.0 {
                p[i * nc + j] / s
            } else {
                1.0 / nc as f64
            };
        }
    }
    p
}

struct Cut {
    g: Vec<f64>,
    /// `f(z) >= g . z + h`
    h: f64,
}

/// Shared constraint block: row sums (equalities) then `z >= 0`, appended after `extra` rows.
fn simplex_rows(
    nr: usize,
    nc: usize,
    trip: &mut (Vec<usize>, Vec<usize>, Vec<f64>),
    b: &mut Vec<f64>,
) {
    for i in 0..nr {
        for j in 0..nc {
            trip.0.push(i);
            trip.1.push(i * nc + j);
            trip.2.push(1.0);
        }
        b.push(1.0);
    }
}

/// Runs `solve` on the master problems' cuts in the dense solvers' form.
fn with_dense_cuts<T>(
    cuts: &[Cut],
    nr: usize,
    nc: usize,
    solve: impl FnOnce(&crate::dense::Cuts) -> T,
) -> T {
    let g: Vec<&[f64]> = cuts.iter().map(|c| c.g.as_slice()).collect();
    let h: Vec<f64> = cuts.iter().map(|c| c.h).collect();
    solve(&crate::dense::Cuts {
        nr,
        nc,
        g: &g,
        h: &h,
    })
}

/// min t s.t. t >= g_k . z + h_k, t >= 0, z in simplices: the minimiser and a lower bound of the
/// optimum (certified by the dual multipliers). The dense simplex, or Clarabel if it fails.
fn master_lp(cuts: &[Cut], nr: usize, nc: usize, guide: &[f64]) -> Option<(Vec<f64>, f64)> {
    match with_dense_cuts(cuts, nr, nc, |dc| crate::dense::master_lp(dc, guide)) {
        Some(sol) => Some((normalise_rows(&sol.z, nr, nc), sol.lower)),
        None => master_lp_clarabel(cuts, nr, nc),
    }
}

/// [`master_lp`] by Clarabel (the fallback, and the reference in tests). Returns (z, t).
fn master_lp_clarabel(cuts: &[Cut], nr: usize, nc: usize) -> Option<(Vec<f64>, f64)> {
    let np = nr * nc;
    let nvar = np + 1;
    let mut trip = (Vec::new(), Vec::new(), Vec::new());
    let mut b = Vec::new();
    simplex_rows(nr, nc, &mut trip, &mut b);
    let mut row = nr;
    for cut in cuts {
        for (k, &gk) in cut.g.iter().enumerate() {
            if gk != 0.0 {
                trip.0.push(row);
                trip.1.push(k);
                trip.2.push(gk);
            }
        }
        trip.0.push(row);
        trip.1.push(np);
        trip.2.push(-1.0);
        b.push(-cut.h);
        row += 1;
    }
    for k in 0..nvar {
        trip.0.push(row);
        trip.1.push(k);
        trip.2.push(-1.0);
        b.push(0.0);
        row += 1;
    }
    let mut q = vec![0.0; nvar];
    q[np] = 1.0;
    let x = clarabel_solve(nvar, None, &q, trip, &b, nr, cuts.len() + nvar)?;
    let t = x[np];
    Some((normalise_rows(&x[..np], nr, nc), t))
}

/// Euclidean projection of `center` onto {z in simplices : g_k . z + h_k <= level for all k}.
fn level_projection(
    cuts: &[Cut],
    level: f64,
    center: &[f64],
    nr: usize,
    nc: usize,
) -> Option<Vec<f64>> {
    match with_dense_cuts(cuts, nr, nc, |dc| {
        crate::dense::level_projection(dc, level, center)
    }) {
        crate::dense::Projection::Point(z) => Some(normalise_rows(&z, nr, nc)),
        crate::dense::Projection::Empty => None,
        crate::dense::Projection::Failed => level_projection_clarabel(cuts, level, center, nr, nc),
    }
}

/// [`level_projection`] by Clarabel (the fallback, and the reference in tests).
fn level_projection_clarabel(
    cuts: &[Cut],
    level: f64,
    center: &[f64],
    nr: usize,
    nc: usize,
) -> Option<Vec<f64>> {
    let np = nr * nc;
    let mut trip = (Vec::new(), Vec::new(), Vec::new());
    let mut b = Vec::new();
    simplex_rows(nr, nc, &mut trip, &mut b);
    let mut row = nr;
    for cut in cuts {
        for (k, &gk) in cut.g.iter().enumerate() {
            if gk != 0.0 {
                trip.0.push(row);
                trip.1.push(k);
                trip.2.push(gk);
            }
        }
        b.push(level - cut.h);
        row += 1;
    }
    for k in 0..np {
        trip.0.push(row);
        trip.1.push(k);
        trip.2.push(-1.0);
        b.push(0.0);
        row += 1;
    }
    let q: Vec<f64> = center.iter().map(|v| -v).collect();
    let x = clarabel_solve(np, Some(1.0), &q, trip, &b, nr, cuts.len() + np)?;
    Some(normalise_rows(&x, nr, nc))
}

/// Largest number of cutting planes kept in the master problems (the least active are dropped).
const MAX_CUTS: usize = 40;

/// Residuals farther than this share of the unit's voters from zero at the warm start get their
/// sign fixed (measured: ~18% of the cells stay uncertain on the 200k benchmark).
const SIGN_MARGIN: f64 = 0.003;

/// Iterations per sign-fixing round before falling back to the plain bundle on the full data.
const ROUND_ITER: usize = 400;

/// Level parameter: the next point is projected on `{model <= low + LEVEL_LAMBDA * gap}`.
const LEVEL_LAMBDA: f64 = 0.4;

/// Master LP (certified lower bound) every this many bundle iterations; also whenever the level
/// projection fails. Measured at 200k units: 1.1 s vs 1.7 s when solved every iteration.
const LP_EVERY: usize = 3;

/// Units in the warm-start subsample (approximately).
const WARM_UNITS: usize = 5_000;

/// Level bundle method for lphom. Stops when the certified gap is at most `rel_tol` times the
/// best objective value (or `1e-12` of the votes, whichever is larger).
///
/// Large inputs (at least `4 * WARM_UNITS` units) use two accelerations that keep the certificate:
/// 1. *Warm start*: the bundle first runs on a fixed strided subsample of about `WARM_UNITS` units.
/// 2. *Sign fixing*: at that solution most unit residuals are far from zero, so their sign at the
///    optimum is predictable; for those cells `|e|` is replaced by `sign · e`, which is linear in
///    `P` and aggregated once. The resulting function `F_red` satisfies `F_red <= F` everywhere, so
///    every cutting-plane lower bound of `F_red` is a lower bound of the optimum of `F`, and
///    `F_red` costs only a pass over the few "uncertain" cells. After minimising `F_red`, one full
///    pass evaluates `F` at the candidate; cells whose sign was predicted wrongly join the uncertain
///    set (this only raises `F_red`, so all cuts stay valid) and the bundle continues, until the
///    certified gap `F(P) − lower bound` is within tolerance.
///
/// Cut management: the master problems keep at most [`MAX_CUTS`] cuts, dropping those least active
/// at the master solution (the lower bound is a running maximum, so it stays valid).
pub(crate) fn lphom_bundle(d: &Data, rel_tol: f64, max_iter: usize) -> LpFit {
    lphom_bundle_from(d, rel_tol, max_iter, None)
}

/// [`lphom_bundle`] with an optional warm start that replaces the subsample stage (a bootstrap
/// replicate starts from the full-data solution, closer than any subsample's). The certificate
/// is unchanged: the start only decides where the bundle and the sign fixing begin.
pub(crate) fn lphom_bundle_from(
    d: &Data,
    rel_tol: f64,
    max_iter: usize,
    start: Option<&[f64]>,
) -> LpFit {
    if d.u < 4 * WARM_UNITS {
        let mut st = BundleState::new(d, start.map(|p| p.to_vec()));
        let full = |p: &[f64]| eval(d, p);
        st.run(d, &full, rel_tol, max_iter);
        return st.finish(d, "level bundle (dense master problems)");
    }
    let p0 = match start {
        Some(p) => p.to_vec(),
        None => {
            let sub = d.subsample(d.u / WARM_UNITS);
            let mut ws = BundleState::new(&sub, None);
            ws.run(&sub, &|p: &[f64]| eval(&sub, p), 1e-4, max_iter);
            ws.best.clone()
        }
    };
    let (nr, nc) = (d.r, d.c);
    // Uncertain cells: |e_uc(p0)| within 1% of the unit's voters.
    let mut fixed_sign = vec![0i8; d.u * nc];
    {
        let parts = par_chunks(d.u, |_, a, b| {
            let mut out = Vec::with_capacity((b - a) * nc);
            for u in a..b {
                let x = d.xu(u);
                let y = d.yu(u);
                let n: f64 = x.iter().sum::<f64>() * SIGN_MARGIN;
                for j in 0..nc {
                    let e: f64 = (0..nr).map(|i| x[i] * p0[i * nc + j]).sum::<f64>() - y[j];
                    out.push(if e > n {
                        1i8
                    } else if e < -n {
                        -1
                    } else {
                        0
                    });
                }
            }
            out
        });
        let mut k = 0;
        for part in parts {
            fixed_sign[k..k + part.len()].copy_from_slice(&part);
            k += part.len();
        }
    }
    let s = 1.0 / d.total;
    let mut st = BundleState::new(d, Some(p0));
    let mut rounds = 0;
    let mut total_iter = 0;
    loop {
        rounds += 1;
        let red = Reduced::new(d, &fixed_sign);
        let f_red = |p: &[f64]| red.eval(d, p);
        let before = st.iterations;
        // Minimise F_red (its values are not upper bounds of F, so `best` is reset each round).
        st.f_best = f64::INFINITY;
        st.run(
            d,
            &f_red,
            rel_tol * 0.5,
            ROUND_ITER.min(max_iter.saturating_sub(total_iter)),
        );
        total_iter += st.iterations - before;
        // Full evaluation at the candidate.
        let cand = st.best.clone();
        let (f, _) = eval(d, &cand);
        let f = f * s;
        if f < st.f_true_best {
            st.f_true_best = f;
            st.true_best = cand.clone();
        }
        let gap = st.f_true_best - st.f_low;
        if gap <= (rel_tol * st.f_true_best).max(1e-12) || total_iter >= max_iter {
            break;
        }
        if rounds >= 3 || st.iterations - before >= ROUND_ITER {
            // Safety net: plain bundle on the full data from the best point (certified as usual).
            let mut fb = BundleState::new(d, Some(st.true_best.clone()));
            fb.run(d, &|p: &[f64]| eval(d, p), rel_tol, max_iter);
            if fb.f_best < st.f_true_best {
                st.f_true_best = fb.f_best;
                st.true_best = fb.best.clone();
            }
            st.f_low = st.f_low.max(fb.f_low);
            total_iter += fb.iterations;
            break;
        }
        // Release wrongly predicted signs at the candidate.
        let mut changed = 0usize;
        for u in 0..d.u {
            let x = d.xu(u);
            let y = d.yu(u);
            for j in 0..nc {
                let sg = fixed_sign[u * nc + j];
                if sg != 0 {
                    let e: f64 = (0..nr).map(|i| x[i] * cand[i * nc + j]).sum::<f64>() - y[j];
                    if e * sg as f64 <= 0.0 {
                        fixed_sign[u * nc + j] = 0;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            // Signs consistent but the gap is still open: keep minimising (tighter tolerance).
            st.tighten = (st.tighten * 0.1).max(1e-3);
        }
        st.f_best = f64::INFINITY;
    }
    st.best = st.true_best.clone();
    st.f_best = st.f_true_best;
    st.iterations = total_iter;
    st.finish(
        d,
        "level bundle, warm start on a subsample + sign fixing (dense master problems)",
    )
}

/// `F_red`: exact `|e|` on uncertain cells (`sign == 0`), `sign · e` (linear) on the others.
struct Reduced {
    /// Linear coefficients on `P` (row-major) and constant, in votes.
    lin: Vec<f64>,
    constant: f64,
    /// Uncertain cells `(unit, col)`.
    cells: Vec<(u32, u32)>,
}

impl Reduced {
    fn new(d: &Data, sign: &[i8]) -> Reduced {
        let (nr, nc) = (d.r, d.c);
        let mut lin = vec![0.0; nr * nc];
        let mut constant = 0.0;
        let mut cells = Vec::new();
        for u in 0..d.u {
            let x = d.xu(u);
            let y = d.yu(u);
            for j in 0..nc {
                let sg = sign[u * nc + j] as f64;
                if sg == 0.0 {
                    cells.push((u as u32, j as u32));
                } else {
                    for i in 0..nr {
                        lin[i * nc + j] += sg * x[i];
                    }
                    constant -= sg * y[j];
                }
            }
        }
        Reduced {
            lin,
            constant,
            cells,
        }
    }

    fn eval(&self, d: &Data, p: &[f64]) -> (f64, Vec<f64>) {
        let (nr, nc) = (d.r, d.c);
        let mut f = self.constant + self.lin.iter().zip(p).map(|(a, b)| a * b).sum::<f64>();
        let mut g = self.lin.clone();
        let n_chunks = self.cells.len().div_ceil(CELL_CHUNK);
        let parts = par_chunks(n_chunks * CHUNK, |ci, _, _| {
            let lo = ci * CELL_CHUNK;
            let hi = ((ci + 1) * CELL_CHUNK).min(self.cells.len());
            let mut f = 0.0;
            let mut g = vec![0.0; nr * nc];
            for &(u, j) in self.cells.get(lo..hi).unwrap_or(&[]) {
                let (u, j) = (u as usize, j as usize);
                let x = d.xu(u);
                let e: f64 = (0..nr).map(|i| x[i] * p[i * nc + j]).sum::<f64>() - d.y[u * nc + j];
                f += e.abs();
                let sg = if e > 0.0 {
                    1.0
                } else if e < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                if sg != 0.0 {
                    for i in 0..nr {
                        g[i * nc + j] += sg * x[i];
                    }
                }
            }
            (f, g)
        });
        for (pf, pg) in parts {
            f += pf;
            for (a, b) in g.iter_mut().zip(pg) {
                *a += b;
            }
        }
        (f, g)
    }
}

/// Uncertain cells per parallel task in [`Reduced::eval`].
const CELL_CHUNK: usize = 8192;

/// Objective oracle: value and subgradient (votes) at a point.
type EvalFn<'a> = dyn Fn(&[f64]) -> (f64, Vec<f64>) + 'a;

/// State of a level bundle run (cuts and bounds survive across calls to [`BundleState::run`]).
struct BundleState {
    z: Vec<f64>,
    cuts: Vec<Cut>,
    best: Vec<f64>,
    f_best: f64,
    /// Best value of the true objective seen (sign fixing only).
    true_best: Vec<f64>,
    f_true_best: f64,
    f_low: f64,
    iterations: usize,
    /// Extra factor on the stopping tolerance (sign fixing with a stubborn gap).
    tighten: f64,
}

impl BundleState {
    fn new(d: &Data, start: Option<Vec<f64>>) -> BundleState {
        let (nr, nc) = (d.r, d.c);
        let s = 1.0 / d.total;
        // Default start: the independence table (every row moves like the whole electorate).
        let z = match start {
            Some(p) => p,
            None => (0..nr)
                .flat_map(|_| d.col_tot.iter().map(|&v| v * s))
                .collect(),
        };
        let z = normalise_rows(&z, nr, nc);
        BundleState {
            best: z.clone(),
            true_best: z.clone(),
            z,
            cuts: Vec::new(),
            f_best: f64::INFINITY,
            f_true_best: f64::INFINITY,
            f_low: 0.0,
            iterations: 0,
            tighten: 1.0,
        }
    }

    /// Runs until the gap of `f` (votes-valued) is within `rel_tol` or `max_iter` more iterations.
    fn run(&mut self, d: &Data, f_eval: &EvalFn, rel_tol: f64, max_iter: usize) {
        let (nr, nc) = (d.r, d.c);
        let s = 1.0 / d.total;
        let lambda = LEVEL_LAMBDA;
        let rel_tol = rel_tol * self.tighten;
        for _ in 0..max_iter {
            self.iterations += 1;
            let (f, g) = f_eval(&self.z);
            let (f, g): (f64, Vec<f64>) = (f * s, g.iter().map(|v| v * s).collect());
            if f < self.f_best {
                self.f_best = f;
                self.best.clone_from(&self.z);
            }
            let h = f - g.iter().zip(&self.z).map(|(a, b)| a * b).sum::<f64>();
            self.cuts.push(Cut { g, h });
            // The master LP (lower bound) is re-solved every `LP_EVERY` iterations only: a stale
            // lower bound is still valid, just weaker.
            let mut zl = None;
            if self.iterations.is_multiple_of(LP_EVERY) || self.f_low == 0.0 {
                let Some((z, t)) = master_lp(&self.cuts, nr, nc, &self.best) else {
                    break;
                };
                self.f_low = self.f_low.max(t.max(0.0));
                zl = Some(z);
            }
            let gap = self.f_best - self.f_low;
            if gap <= (rel_tol * self.f_best).max(1e-12) {
                break;
            }
            if let Some(zl) = zl.as_ref() {
                if self.cuts.len() > MAX_CUTS {
                    // Keep the newest cut; drop the cuts with the largest slack at the master solution.
                    let val = |c: &Cut| c.g.iter().zip(zl).map(|(a, b)| a * b).sum::<f64>() + c.h;
                    let newest = self.cuts.pop().expect("just pushed");
                    self.cuts.sort_by(|a, b| val(b).total_cmp(&val(a)));
                    self.cuts.truncate(MAX_CUTS - 1);
                    self.cuts.push(newest);
                }
            }
            let level = self.f_low + lambda * gap;
            match level_projection(&self.cuts, level, &self.best, nr, nc) {
                Some(z) => self.z = z,
                None => {
                    let Some((z, t)) = master_lp(&self.cuts, nr, nc, &self.best) else {
                        break;
                    };
                    self.f_low = self.f_low.max(t.max(0.0));
                    self.z = z;
                }
            }
        }
    }

    fn finish(self, d: &Data, solver: &'static str) -> LpFit {
        let s = 1.0 / d.total;
        LpFit {
            p: self.best,
            objective: self.f_best / s,
            gap: (self.f_best - self.f_low).max(0.0) / s,
            iterations: self.iterations,
            solver,
        }
    }
}

/// lphom with the solver chosen by size: the exact sparse LP up to `exact_max_cells` unit cells
/// (`units x cols`), the bundle method above (or if Clarabel fails).
pub(crate) fn lphom(d: &Data, exact_max_cells: usize) -> LpFit {
    if d.u * d.c <= exact_max_cells {
        if let Some(fit) = lphom_exact(d) {
            return fit;
        }
    }
    lphom_bundle(d, 1e-6, 2000)
}

/// L1-closest table to `x_r p_rc` with margins `x`, `y` (closed-form member of the optimal set; see
/// module docs). Writes row-major `R x C` into `out`.
pub(crate) fn unit_table(x: &[f64], y: &[f64], p: &[f64], out: &mut [f64]) {
    let (nr, nc) = (x.len(), y.len());
    // Widths are limited to MAX_DIM by `estimate`.
    let mut yhat = [0.0f64; MAX_DIM];
    let yhat = &mut yhat[..nc];
    for i in 0..nr {
        for j in 0..nc {
            let t = x[i] * p[i * nc + j];
            out[i * nc + j] = t;
            yhat[j] += t;
        }
    }
    // Deficits (positive) and surpluses (negative).
    let mut dsum = 0.0;
    for j in 0..nc {
        let dj = y[j] - yhat[j];
        if dj > 0.0 {
            dsum += dj;
        }
    }
    if dsum <= 0.0 {
        return;
    }
    let mut freed = [0.0f64; MAX_DIM];
    let freed = &mut freed[..nr];
    let mut ftot = 0.0;
    for j in 0..nc {
        let dj = y[j] - yhat[j];
        if dj < 0.0 && yhat[j] > 0.0 {
            let frac = (-dj / yhat[j]).min(1.0);
            for i in 0..nr {
                let dec = out[i * nc + j] * frac;
                out[i * nc + j] -= dec;
                freed[i] += dec;
                ftot += dec;
            }
        }
    }
    if ftot <= 0.0 {
        return;
    }
    // Spread each row's freed votes over the deficit columns: the table with row sums `freed` and
    // column sums = deficits that is closest (in Kullback-Leibler terms, by iterative proportional
    // fitting) to the homogeneous pattern `t` restricted to those columns, so every row keeps its
    // own destination pattern.
    let mut inc = [0.0f64; MAX_DIM * MAX_DIM];
    let inc = &mut inc[..nr * nc];
    let mut any_def = [false; MAX_DIM];
    for j in 0..nc {
        any_def[j] = y[j] - yhat[j] > 0.0;
    }
    for i in 0..nr {
        if freed[i] <= 0.0 {
            continue;
        }
        for j in 0..nc {
            if any_def[j] {
                inc[i * nc + j] = x[i] * p[i * nc + j] + 1e-9 * freed[i];
            }
        }
    }
    // Newton's method on the column factors (as em's unit tables, [`crate::em::fit_by_newton`]):
    // proportional fitting alone converges linearly and on Poland 2020 (14 x 5) its up to 1000
    // rounds per unit and pass were most of nslphom's time. The rounds below stay as the fallback.
    let mut targets = [0.0f64; MAX_DIM];
    for j in 0..nc {
        if any_def[j] {
            targets[j] = y[j] - yhat[j];
        }
    }
    let mut b = [0.0f64; MAX_DIM];
    for j in 0..nc {
        b[j] = if any_def[j] { 1.0 } else { 0.0 };
    }
    let mut fitted = vec![0.0f64; nr * nc];
    let mut sc = crate::em::ModeScratch::new(nr, nc);
    let newton_ok = crate::em::fit_by_newton(
        freed,
        &targets[..nc],
        inc,
        &mut b[..nc],
        &mut fitted,
        1e-11 * (1.0 + dsum),
        50,
        &mut sc,
    );
    if newton_ok {
        inc.copy_from_slice(&fitted);
    }
    for _ in 0..if newton_ok { 0 } else { 1000 } {
        let mut worst = 0.0f64;
        for i in 0..nr {
            let s: f64 = inc[i * nc..(i + 1) * nc].iter().sum();
            if s > 0.0 {
                let f = freed[i] / s;
                inc[i * nc..(i + 1) * nc].iter_mut().for_each(|v| *v *= f);
            }
        }
        for j in 0..nc {
            if !any_def[j] {
                continue;
            }
            let s: f64 = (0..nr).map(|i| inc[i * nc + j]).sum();
            let target = y[j] - yhat[j];
            if s > 0.0 {
                let f = target / s;
                (0..nr).for_each(|i| inc[i * nc + j] *= f);
            }
        }
        for i in 0..nr {
            let s: f64 = inc[i * nc..(i + 1) * nc].iter().sum();
            worst = worst.max((s - freed[i]).abs());
        }
        if worst < 1e-11 * (1.0 + dsum) {
            break;
        }
    }
    // Final exact row repair (column sums are exact after the last column step up to round-off).
    for i in 0..nr {
        for j in 0..nc {
            out[i * nc + j] += inc[i * nc + j];
        }
    }
}

/// Result of the unit-level refinement.
pub(crate) struct Refined {
    pub p: Vec<f64>,
    /// Aggregated unit tables (votes), row-major.
    pub votes: Vec<f64>,
    pub passes: usize,
    /// Unit tables (`u * R * C`) when requested.
    pub units: Option<Vec<f64>>,
}

/// Sum of unit tables for `p`, and optionally the unit tables themselves.
pub(crate) fn aggregate_units(d: &Data, p: &[f64], keep: bool) -> (Vec<f64>, Option<Vec<f64>>) {
    let (nr, nc) = (d.r, d.c);
    let k = nr * nc;
    let parts = par_chunks(d.u, |_, a, b| {
        let mut agg = vec![0.0; k];
        let mut tab = vec![0.0; k];
        let mut kept = if keep {
            Vec::with_capacity((b - a) * k)
        } else {
            Vec::new()
        };
        for u in a..b {
            unit_table(d.xu(u), d.yu(u), p, &mut tab);
            for (s, t) in agg.iter_mut().zip(&tab) {
                *s += t;
            }
            if keep {
                kept.extend_from_slice(&tab);
            }
        }
        (agg, kept)
    });
    let mut agg = vec![0.0; k];
    let mut units = if keep {
        Some(Vec::with_capacity(d.u * k))
    } else {
        None
    };
    for (a, t) in parts {
        for (s, v) in agg.iter_mut().zip(&a) {
            *s += v;
        }
        if let Some(all) = units.as_mut() {
            all.extend_from_slice(&t);
        }
    }
    (agg, units)
}

/// tslphom (`max_passes == 1`) / nslphom (`max_passes > 1`) starting from `p0`.
pub(crate) fn refine(d: &Data, p0: &[f64], max_passes: usize, tol: f64, keep: bool) -> Refined {
    let (nr, nc) = (d.r, d.c);
    let mut p = p0.to_vec();
    let mut passes = 0;
    loop {
        passes += 1;
        let (votes, units) = aggregate_units(d, &p, keep && passes >= max_passes);
        let mut next = p.clone();
        for i in 0..nr {
            if d.row_tot[i] > 0.0 {
                for j in 0..nc {
                    next[i * nc + j] = votes[i * nc + j] / d.row_tot[i];
                }
            }
        }
        let delta = next
            .iter()
            .zip(&p)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        p = next;
        if passes >= max_passes || delta < tol {
            let units = if keep && units.is_none() {
                aggregate_units(d, &p, true).1
            } else {
                units
            };
            return Refined {
                p,
                votes,
                passes,
                units,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_fixing_bundle_matches_plain_bundle() {
        // 24,000 units (above the warm-start threshold), 3 x 3, heterogeneous around a planted P.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let p = [0.7, 0.2, 0.1, 0.1, 0.6, 0.3, 0.3, 0.3, 0.4];
        let mut m = crate::input::Margins {
            unit_ids: vec![],
            rows: vec!["a".into(), "b".into(), "c".into()],
            cols: vec!["x".into(), "y".into(), "z".into()],
            row_counts: vec![],
            col_counts: vec![],
        };
        for u in 0..4 * WARM_UNITS + 4_000 {
            let x: Vec<u64> = (0..3).map(|_| rng.gen_range(0..400)).collect();
            let mut y = vec![0u64; 3];
            for i in 0..3 {
                let mut left = x[i];
                for j in 0..2 {
                    let q = (p[i * 3 + j] + rng.gen_range(-0.08..0.08f64)).clamp(0.0, 1.0);
                    let v = ((x[i] as f64 * q).round() as u64).min(left);
                    y[j] += v;
                    left -= v;
                }
                y[2] += left;
            }
            m.unit_ids.push(u.to_string());
            m.row_counts.push(x);
            m.col_counts.push(y);
        }
        let d = Data::new(&m);
        let fast = lphom_bundle(&d, 1e-6, 2000);
        assert!(fast.solver.contains("sign fixing"));
        let mut plain = BundleState::new(&d, None);
        plain.run(&d, &|q: &[f64]| eval(&d, q), 1e-6, 2000);
        let plain = plain.finish(&d, "plain");
        let (f, _) = eval(&d, &fast.p);
        assert!(
            (f - fast.objective).abs() < 1e-6 * f,
            "reported objective is F(P)"
        );
        let tol = fast.gap + plain.gap + 1e-9 * f;
        assert!(
            (fast.objective - plain.objective).abs() <= tol,
            "{} vs {} (gaps {} {})",
            fast.objective,
            plain.objective,
            fast.gap,
            plain.gap
        );
        assert!(fast.gap <= 1e-6 * fast.objective);
    }

    #[test]
    fn dense_master_problems_agree_with_clarabel() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let mut infeasible_seen = 0;
        for case in 0..300 {
            let nr = rng.gen_range(1..6);
            let nc = rng.gen_range(2..7);
            let np = nr * nc;
            let m = rng.gen_range(1..25);
            // Half the cases are cuts of a real L1 objective (sparse-ish, many ties), half random.
            let cuts: Vec<Cut> = (0..m)
                .map(|_| {
                    let g: Vec<f64> = (0..np)
                        .map(|_| {
                            if case % 2 == 0 {
                                rng.gen_range(-1.0..1.0)
                            } else {
                                [-0.5, 0.0, 0.25, 0.5][rng.gen_range(0..4)]
                            }
                        })
                        .collect();
                    Cut {
                        g,
                        h: rng.gen_range(-0.5..1.0),
                    }
                })
                .collect();
            let guide: Vec<f64> = (0..np).map(|_| rng.gen_range(0.0..1.0)).collect();
            let (z_ref, t_ref) = master_lp_clarabel(&cuts, nr, nc).unwrap();
            let g: Vec<&[f64]> = cuts.iter().map(|c| c.g.as_slice()).collect();
            let h: Vec<f64> = cuts.iter().map(|c| c.h).collect();
            let dc = crate::dense::Cuts {
                nr,
                nc,
                g: &g,
                h: &h,
            };
            let sol = crate::dense::master_lp(&dc, &guide).expect("dense master LP");
            let model = |z: &[f64]| {
                cuts.iter()
                    .map(|c| c.g.iter().zip(z).map(|(a, b)| a * b).sum::<f64>() + c.h)
                    .fold(0.0f64, f64::max)
            };
            let tol = 1e-6 * (1.0 + t_ref.abs());
            assert!(
                (sol.lower - t_ref).abs() <= tol,
                "case {case}: dense bound {} vs Clarabel {t_ref}",
                sol.lower
            );
            assert!((model(&sol.z) - sol.lower).abs() <= tol, "case {case}");
            assert!(
                model(&z_ref) >= sol.lower - 1e-9,
                "case {case}: bound above a point"
            );
            for r in 0..nr {
                let rs: f64 = sol.z[r * nc..(r + 1) * nc].iter().sum();
                assert!((rs - 1.0).abs() < 1e-9 && sol.z.iter().all(|&v| v >= 0.0));
            }
            // Projection onto a feasible level set (above the optimum) and onto an empty one.
            let center: Vec<f64> = (0..np).map(|_| rng.gen_range(-0.3..1.0)).collect();
            let level =
                t_ref + rng.gen_range(0.0..0.5) * (model(&center).max(t_ref) - t_ref) + 1e-3;
            let p_ref = level_projection_clarabel(&cuts, level, &center, nr, nc).unwrap();
            let crate::dense::Projection::Point(p) =
                crate::dense::level_projection(&dc, level, &center)
            else {
                panic!("case {case}: feasible level set")
            };
            let p = normalise_rows(&p, nr, nc);
            // The projection is unique: the exact one is feasible and no farther from the
            // center than Clarabel's (whose interior-point tolerance leaves ~1e-5 in the point).
            let dist2 = |z: &[f64]| {
                z.iter()
                    .zip(&center)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
            };
            assert!(model(&p) <= level + 1e-9, "case {case}: level violated");
            assert!(
                dist2(&p) <= dist2(&p_ref) + 1e-7,
                "case {case}: {} vs Clarabel {}",
                dist2(&p),
                dist2(&p_ref)
            );
            let diff = p
                .iter()
                .zip(&p_ref)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(diff < 1e-4, "case {case}: projections differ by {diff}");
            if t_ref > 1e-3 {
                let low = t_ref * 0.9 - 1e-3;
                assert!(matches!(
                    crate::dense::level_projection(&dc, low, &center),
                    crate::dense::Projection::Empty
                ));
                infeasible_seen += 1;
            }
        }
        assert!(infeasible_seen > 50);
    }

    #[test]
    fn unit_table_has_exact_margins_and_optimal_distance() {
        let x = [30.0, 50.0, 20.0];
        let y = [10.0, 60.0, 30.0];
        let p = [0.5, 0.3, 0.2, 0.1, 0.8, 0.1, 0.4, 0.4, 0.2];
        let mut out = [0.0; 9];
        unit_table(&x, &y, &p, &mut out);
        let mut yhat = [0.0; 3];
        let mut dist = 0.0;
        for i in 0..3 {
            let rs: f64 = out[i * 3..i * 3 + 3].iter().sum();
            assert!(
                (rs - x[i]).abs() < 1e-7,
                "row {i}: {rs} vs {} table {out:?}",
                x[i]
            );
            for j in 0..3 {
                assert!(out[i * 3 + j] >= -1e-12);
                yhat[j] += x[i] * p[i * 3 + j];
                dist += (out[i * 3 + j] - x[i] * p[i * 3 + j]).abs();
            }
        }
        for j in 0..3 {
            let cs: f64 = (0..3).map(|i| out[i * 3 + j]).sum();
            assert!((cs - y[j]).abs() < 1e-7);
        }
        let lower: f64 = (0..3).map(|j| (y[j] - yhat[j]).abs()).sum();
        assert!(
            (dist - lower).abs() < 1e-6,
            "dist {dist} lower bound {lower}"
        );
    }
}
