//! The station model: weighted least squares of each target (a candidate's votes per registered
//! voter, ballots cast per registered voter) on the station's covariates, plus one random effect
//! per area, fitted on the stations that have reported.
//!
//! The area effects are a ridge penalty `lambda` on one indicator column per area, i.e. random
//! effects with variance `sigma^2 / lambda`. Their block of the normal equations is diagonal, so the
//! system is solved through its Schur complement: the cost is that of the dense covariates alone
//! (`p x p`), whatever the number of areas. Every target shares one design and one set of weights,
//! so one factorisation serves them all, and any linear combination of targets (a share, a
//! margin) has its prediction variance from the same factor.

use crate::population::Population;

/// The targets of one station: `k` candidate rates, then the turnout rate.
pub(crate) fn targets(pop: &Population, i: usize, out: &mut [f64]) {
    let k = pop.k();
    let size = pop.size[i];
    for (o, &v) in out[..k].iter_mut().zip(pop.votes_of(i)) {
        *o = v as f64 / size;
    }
    out[k] = pop.turnout[i] as f64 / size;
}

/// Normal equations of the weighted problem, before the area penalty: sufficient statistics,
/// so the fit on all stations but a fold is the total minus the fold's (calibration).
#[derive(Clone)]
pub(crate) struct Normal {
    groups: usize,
    /// `p x p`, dense covariates.
    xx: Vec<f64>,
    /// `p x groups`: sum of `w x` per area.
    xg: Vec<f64>,
    /// Sum of weights per area.
    wg: Vec<f64>,
    /// `q x p`.
    xy: Vec<f64>,
    /// `q x groups`.
    gy: Vec<f64>,
    /// `q`: sum of `w y^2`.
    yy: Vec<f64>,
    /// Stations with a non-zero value of each covariate.
    nonzero: Vec<usize>,
    pub(crate) rows: usize,
}

impl Normal {
    pub(crate) fn new(p: usize, q: usize, groups: usize) -> Normal {
        Normal {
            groups,
            xx: vec![0.0; p * p],
            xg: vec![0.0; p * groups],
            wg: vec![0.0; groups],
            xy: vec![0.0; q * p],
            gy: vec![0.0; q * groups],
            yy: vec![0.0; q],
            nonzero: vec![0; p],
            rows: 0,
        }
    }

    /// Adds station `i` with weight `wi` (the lower triangle of `xx` only; see [`Normal::seal`]).
    pub(crate) fn add(&mut self, pop: &Population, i: usize, wi: f64, y: &mut [f64]) {
        let p = pop.p;
        let groups = self.groups;
        let x = pop.row(i);
        let g = pop.group[i] as usize;
        targets(pop, i, y);
        for a in 0..p {
            let wa = wi * x[a];
            let row = &mut self.xx[a * p..a * p + a + 1];
            for (cell, &xb) in row.iter_mut().zip(x) {
                *cell += wa * xb;
            }
            if groups > 0 {
                self.xg[a * groups + g] += wa;
            }
            if x[a] != 0.0 {
                self.nonzero[a] += 1;
            }
        }
        if groups > 0 {
            self.wg[g] += wi;
        }
        for (t, &yt) in y.iter().enumerate() {
            let wy = wi * yt;
            for (cell, &xa) in self.xy[t * p..(t + 1) * p].iter_mut().zip(x) {
                *cell += wy * xa;
            }
            if groups > 0 {
                self.gy[t * groups + g] += wy;
            }
            self.yy[t] += wy * yt;
        }
        self.rows += 1;
    }

    /// Mirrors the lower triangle of `xx` once every station is in.
    pub(crate) fn seal(&mut self, p: usize) {
        for a in 0..p {
            for b in 0..a {
                self.xx[b * p + a] = self.xx[a * p + b];
            }
        }
    }

    /// `self - other`: the statistics of the stations in `self` but not in `other`.
    pub(crate) fn minus(&self, other: &Normal) -> Normal {
        let sub = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x - y).collect();
        Normal {
            groups: self.groups,
            xx: sub(&self.xx, &other.xx),
            xg: sub(&self.xg, &other.xg),
            wg: sub(&self.wg, &other.wg),
            xy: sub(&self.xy, &other.xy),
            gy: sub(&self.gy, &other.gy),
            yy: sub(&self.yy, &other.yy),
            nonzero: self
                .nonzero
                .iter()
                .zip(&other.nonzero)
                .map(|(a, b)| a - b)
                .collect(),
            rows: self.rows - other.rows,
        }
    }

    /// The sum of two disjoint sets of stations.
    pub(crate) fn plus(&self, other: &Normal) -> Normal {
        let add = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x + y).collect();
        Normal {
            groups: self.groups,
            xx: add(&self.xx, &other.xx),
            xg: add(&self.xg, &other.xg),
            wg: add(&self.wg, &other.wg),
            xy: add(&self.xy, &other.xy),
            gy: add(&self.gy, &other.gy),
            yy: add(&self.yy, &other.yy),
            nonzero: self
                .nonzero
                .iter()
                .zip(&other.nonzero)
                .map(|(a, b)| a + b)
                .collect(),
            rows: self.rows + other.rows,
        }
    }
}

fn accumulate(pop: &Population, rows: &[usize], w: &[f64], q: usize, groups: usize) -> Normal {
    let mut n = Normal::new(pop.p, q, groups);
    let mut y = vec![0.0; q];
    for (r, &i) in rows.iter().enumerate() {
        n.add(pop, i, w[r], &mut y);
    }
    n.seal(pop.p);
    n
}

/// A factorised model: solves `M z = r` for the penalised normal matrix `M`.
pub(crate) struct Solver {
    p: usize,
    groups: usize,
    /// Cholesky factor of the Schur complement `XX - XG D^-1 XG'` (lower, row-major).
    chol: Vec<f64>,
    xg: Vec<f64>,
    /// `1 / (sum of weights + lambda)` per area; 0 when the areas are not modelled.
    dinv: Vec<f64>,
    /// Covariates estimated in this fit (see [`MIN_SUPPORT`]).
    active: Vec<bool>,
}

/// Stations in with a non-zero value a covariate needs before it is estimated.
const MIN_SUPPORT: usize = 30;

impl Solver {
    /// `(beta, gamma)` with `M (beta, gamma) = (rx, rg)`.
    pub(crate) fn solve(&self, rx: &[f64], rg: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (p, g) = (self.p, self.groups);
        // rhs = rx - XG D^-1 rg (covariates left out of the fit take no part)
        let mut rhs: Vec<f64> = rx
            .iter()
            .zip(&self.active)
            .map(|(&r, &a)| if a { r } else { 0.0 })
            .collect();
        for (a, r) in rhs.iter_mut().enumerate() {
            let row = &self.xg[a * g..(a + 1) * g];
            *r -= row
                .iter()
                .zip(rg)
                .zip(&self.dinv)
                .map(|((x, y), d)| x * y * d)
                .sum::<f64>();
        }
        let beta = chol_solve(&self.chol, p, &rhs);
        let mut gamma = vec![0.0; g];
        for (j, gj) in gamma.iter_mut().enumerate() {
            let pulled: f64 = beta
                .iter()
                .enumerate()
                .map(|(a, b)| self.xg[a * g + j] * b)
                .sum();
            *gj = (rg[j] - pulled) * self.dinv[j];
        }
        (beta, gamma)
    }
}

/// A fitted model of every target.
pub(crate) struct Model {
    pub(crate) solver: Solver,
    /// `q x p`.
    pub(crate) beta: Vec<f64>,
    /// `q x groups`.
    pub(crate) gamma: Vec<f64>,
    /// Residuals of the fitted stations, `rows x q`.
    pub(crate) resid: Vec<f64>,
    /// The penalty on area effects, `None` when they are left out.
    pub(crate) lambda: Option<f64>,
    /// Effective number of parameters (dense ones plus the shrunken area effects).
    pub(crate) dof_used: f64,
}

impl Model {
    pub(crate) fn predict(&self, pop: &Population, i: usize, t: usize) -> f64 {
        let p = pop.p;
        let g = self.solver.groups;
        let mut s: f64 = pop
            .row(i)
            .iter()
            .zip(&self.beta[t * p..(t + 1) * p])
            .map(|(x, b)| x * b)
            .sum();
        if self.lambda.is_some() {
            s += self.gamma[t * g + pop.group[i] as usize];
        }
        s
    }
}

/// Fits every target on `rows` with weights `w` and, when `lambda` is given, area effects
/// penalised by it; with the residuals of those stations.
pub(crate) fn fit(pop: &Population, rows: &[usize], w: &[f64], lambda: Option<f64>) -> Model {
    let q = pop.k() + 1;
    let groups = if lambda.is_some() {
        pop.groups.len()
    } else {
        0
    };
    let n = accumulate(pop, rows, w, q, groups);
    let mut model = solve_normal(pop, &n, lambda);
    let mut y = vec![0.0; q];
    let mut resid = Vec::with_capacity(rows.len() * q);
    for &i in rows {
        targets(pop, i, &mut y);
        for (t, &yt) in y.iter().enumerate() {
            resid.push(yt - model.predict(pop, i, t));
        }
    }
    model.resid = resid;
    model
}

/// The model of the stations summed in `n` (no residuals: see [`Model::weighted_ss`]).
pub(crate) fn solve_normal(pop: &Population, n: &Normal, lambda: Option<f64>) -> Model {
    let q = pop.k() + 1;
    let p = pop.p;
    let groups = n.groups;
    debug_assert_eq!(groups > 0, lambda.is_some());
    // A covariate that is zero for nearly every station in (a size hinge before any small
    // station has reported) cannot be estimated: it is left out of this fit (coefficient 0, no
    // part in the variance) rather than extrapolated from a handful of stations.
    let active: Vec<bool> = n
        .nonzero
        .iter()
        .enumerate()
        .map(|(c, &k)| c == 0 || k >= MIN_SUPPORT)
        .collect();
    let mut xx = n.xx.clone();
    let mut xg = n.xg.clone();
    let mut xy = n.xy.clone();
    for c in (0..p).filter(|&c| !active[c]) {
        for o in 0..p {
            xx[c * p + o] = 0.0;
            xx[o * p + c] = 0.0;
        }
        xx[c * p + c] = 1.0;
        for j in 0..groups {
            xg[c * groups + j] = 0.0;
        }
        for t in 0..q {
            xy[t * p + c] = 0.0;
        }
    }
    let dinv: Vec<f64> = match lambda {
        Some(l) => n.wg.iter().map(|&s| 1.0 / (s + l)).collect(),
        None => Vec::new(),
    };
    let mut schur = xx;
    for a in 0..p {
        for b in 0..=a {
            let s: f64 = (0..groups)
                .map(|j| xg[a * groups + j] * xg[b * groups + j] * dinv[j])
                .sum();
            schur[a * p + b] -= s;
            schur[b * p + a] = schur[a * p + b];
        }
    }
    let chol = cholesky(&schur, p);
    let solver = Solver {
        p,
        groups,
        chol,
        xg,
        dinv,
        active,
    };
    let mut beta = vec![0.0; q * p];
    let mut gamma = vec![0.0; q * groups];
    for t in 0..q {
        let (b, g) = solver.solve(&xy[t * p..(t + 1) * p], &n.gy[t * groups..(t + 1) * groups]);
        beta[t * p..(t + 1) * p].copy_from_slice(&b);
        gamma[t * groups..(t + 1) * groups].copy_from_slice(&g);
    }
    let dof_used = p as f64
        + match lambda {
            Some(l) => n.wg.iter().map(|&s| s / (s + l)).sum::<f64>(),
            None => 0.0,
        };
    Model {
        solver,
        beta,
        gamma,
        resid: Vec::new(),
        lambda,
        dof_used,
    }
}

impl Model {
    /// `sum of w e_t^2` over the stations summed in `n`, from the statistics alone.
    pub(crate) fn weighted_ss(&self, n: &Normal, t: usize) -> f64 {
        let p = self.solver.p;
        let g = self.solver.groups;
        let beta = &self.beta[t * p..(t + 1) * p];
        let gamma = &self.gamma[t * g..(t + 1) * g];
        let mut ss = n.yy[t];
        ss -= 2.0
            * beta
                .iter()
                .zip(&n.xy[t * p..(t + 1) * p])
                .map(|(b, v)| b * v)
                .sum::<f64>();
        ss -= 2.0
            * gamma
                .iter()
                .zip(&n.gy[t * g..(t + 1) * g])
                .map(|(c, v)| c * v)
                .sum::<f64>();
        for a in 0..p {
            let row = &n.xx[a * p..(a + 1) * p];
            ss += beta[a] * row.iter().zip(beta).map(|(x, b)| x * b).sum::<f64>();
            if g > 0 {
                let cross: f64 = n.xg[a * g..(a + 1) * g]
                    .iter()
                    .zip(gamma)
                    .map(|(x, c)| x * c)
                    .sum();
                ss += 2.0 * beta[a] * cross;
            }
        }
        ss += n.wg.iter().zip(gamma).map(|(w, c)| w * c * c).sum::<f64>();
        ss.max(0.0)
    }
}

/// Lower Cholesky factor of a symmetric matrix. Covariates that are constant or collinear among
/// the reported stations (a baseline candidate with no votes there) make it singular; a small
/// ridge on the diagonal keeps the factor defined and leaves their coefficients near zero.
fn cholesky(m: &[f64], p: usize) -> Vec<f64> {
    let scale = (0..p)
        .map(|a| m[a * p + a].abs())
        .fold(0.0, f64::max)
        .max(1e-300);
    let mut jitter = 1e-10 * scale;
    loop {
        if let Some(l) = try_cholesky(m, p, jitter) {
            return l;
        }
        jitter *= 100.0;
    }
}

fn try_cholesky(m: &[f64], p: usize, jitter: f64) -> Option<Vec<f64>> {
    let mut l = vec![0.0; p * p];
    for a in 0..p {
        for b in 0..=a {
            let mut s = m[a * p + b];
            for c in 0..b {
                s -= l[a * p + c] * l[b * p + c];
            }
            if a == b {
                let d = s + jitter;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[a * p + a] = d.sqrt();
            } else {
                l[a * p + b] = s / l[b * p + b];
            }
        }
    }
    Some(l)
}

fn chol_solve(l: &[f64], p: usize, r: &[f64]) -> Vec<f64> {
    let mut z = r.to_vec();
    for a in 0..p {
        for c in 0..a {
            z[a] -= l[a * p + c] * z[c];
        }
        z[a] /= l[a * p + a];
    }
    for a in (0..p).rev() {
        for c in a + 1..p {
            z[a] -= l[c * p + a] * z[c];
        }
        z[a] /= l[a * p + a];
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::population::Inputs;
    use tally_model::{saturate, AreaTree, Candidate, Round, SheetStatus};

    /// 300 stations in 12 areas with area effects and noise (a deterministic mixer).
    fn round() -> Round {
        let mut tree = AreaTree::new("x", vec!["region".into(), "town".into()]);
        let mut r = Round::new(
            1,
            vec![Candidate::new("a"), Candidate::new("b")],
            vec![],
            AreaTree::new("x", vec![]),
        );
        let mut leaves = Vec::new();
        for t in 0..12 {
            leaves.push(tree.leaf(&[format!("R{}", t % 3), format!("T{t}")]));
        }
        r.tree = tree;
        for i in 0..300u64 {
            let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            let reg = 300 + h % 1700;
            let a = reg * (30 + (i % 12) * 2 + h % 7) / 100;
            let b = reg * (20 + h % 11) / 100;
            let valid = a + b;
            r.push(
                &format!("S{i}"),
                leaves[(i % 12) as usize],
                SheetStatus::Counted,
                i + 2,
                [reg, valid + 3, 3, valid].map(saturate),
                &[a, b].map(saturate),
                &[],
            );
        }
        r
    }

    #[test]
    fn sum_of_squares_from_the_statistics_equals_the_residuals() {
        let r = round();
        let pop = Population::build(&Inputs {
            partial: &r,
            baseline: None,
            registry: None,
            level: Some("town"),
        })
        .unwrap();
        let rows: Vec<usize> = (0..pop.len()).step_by(2).collect();
        let w: Vec<f64> = rows
            .iter()
            .map(|&i| 1.0 / (0.01 + 1.0 / pop.size[i]))
            .collect();
        for lambda in [None, Some(50.0)] {
            let with_resid = fit(&pop, &rows, &w, lambda);
            let groups = if lambda.is_some() {
                pop.groups.len()
            } else {
                0
            };
            let n = accumulate(&pop, &rows, &w, 3, groups);
            let from_stats = solve_normal(&pop, &n, lambda);
            for t in 0..3 {
                let direct: f64 = (0..rows.len())
                    .map(|r| w[r] * with_resid.resid[r * 3 + t].powi(2))
                    .sum();
                let ss = from_stats.weighted_ss(&n, t);
                assert!(
                    (ss - direct).abs() <= 1e-8 * direct.max(1e-12),
                    "target {t}, lambda {lambda:?}: {ss} vs {direct}"
                );
            }
            // A fold's training statistics are the total minus the fold.
            let half: Vec<usize> = rows.iter().copied().filter(|i| i % 4 == 0).collect();
            let hw: Vec<f64> = half
                .iter()
                .map(|&i| 1.0 / (0.01 + 1.0 / pop.size[i]))
                .collect();
            let rest: Vec<usize> = rows.iter().copied().filter(|i| i % 4 != 0).collect();
            let rw: Vec<f64> = rest
                .iter()
                .map(|&i| 1.0 / (0.01 + 1.0 / pop.size[i]))
                .collect();
            let minus = n.minus(&accumulate(&pop, &half, &hw, 3, groups));
            let direct = solve_normal(&pop, &accumulate(&pop, &rest, &rw, 3, groups), lambda);
            let by_minus = solve_normal(&pop, &minus, lambda);
            for (x, y) in by_minus.beta.iter().zip(&direct.beta) {
                assert!((x - y).abs() < 1e-9, "{x} vs {y}");
            }
        }
    }

    #[test]
    fn cholesky_solves_a_known_system() {
        // [[4,2],[2,3]] z = [2, 1] -> z = [0.5, 0]
        let l = cholesky(&[4.0, 2.0, 2.0, 3.0], 2);
        let z = chol_solve(&l, 2, &[2.0, 1.0]);
        assert!((z[0] - 0.5).abs() < 1e-9 && z[1].abs() < 1e-9, "{z:?}");
    }
}
