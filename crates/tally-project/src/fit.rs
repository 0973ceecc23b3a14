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

/// Normal equations of the weighted problem, before the area penalty.
struct Normal {
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
}

fn accumulate(pop: &Population, rows: &[usize], w: &[f64], q: usize, groups: usize) -> Normal {
    let p = pop.p;
    let mut n = Normal {
        xx: vec![0.0; p * p],
        xg: vec![0.0; p * groups],
        wg: vec![0.0; groups],
        xy: vec![0.0; q * p],
        gy: vec![0.0; q * groups],
    };
    let mut y = vec![0.0; q];
    for (r, &i) in rows.iter().enumerate() {
        let wi = w[r];
        let x = pop.row(i);
        let g = pop.group[i] as usize;
        targets(pop, i, &mut y);
        for a in 0..p {
            let wa = wi * x[a];
            let row = &mut n.xx[a * p..a * p + a + 1];
            for (cell, &xb) in row.iter_mut().zip(x) {
                *cell += wa * xb;
            }
            n.xg[a * groups + g] += wa;
        }
        n.wg[g] += wi;
        for (t, &yt) in y.iter().enumerate() {
            let wy = wi * yt;
            for (cell, &xa) in n.xy[t * p..(t + 1) * p].iter_mut().zip(x) {
                *cell += wy * xa;
            }
            n.gy[t * groups + g] += wy;
        }
    }
    // Mirror the lower triangle.
    for a in 0..p {
        for b in 0..a {
            n.xx[b * p + a] = n.xx[a * p + b];
        }
    }
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
/// penalised by it.
pub(crate) fn fit(pop: &Population, rows: &[usize], w: &[f64], lambda: Option<f64>) -> Model {
    let q = pop.k() + 1;
    let p = pop.p;
    let groups = if lambda.is_some() {
        pop.groups.len()
    } else {
        0
    };
    let n = if lambda.is_some() {
        accumulate(pop, rows, w, q, groups)
    } else {
        accumulate_dense(pop, rows, w, q)
    };
    // A covariate that is zero for nearly every station in (a size hinge before any small
    // station has reported) cannot be estimated: it is left out of this fit (coefficient 0, no
    // part in the variance) rather than extrapolated from a handful of stations.
    let mut nonzero = vec![0usize; p];
    for &i in rows {
        for (c, &x) in pop.row(i).iter().enumerate() {
            if x != 0.0 {
                nonzero[c] += 1;
            }
        }
    }
    let active: Vec<bool> = nonzero
        .iter()
        .enumerate()
        .map(|(c, &n)| c == 0 || n >= MIN_SUPPORT)
        .collect();
    let mut n = n;
    for c in (0..p).filter(|&c| !active[c]) {
        for o in 0..p {
            n.xx[c * p + o] = 0.0;
            n.xx[o * p + c] = 0.0;
        }
        n.xx[c * p + c] = 1.0;
        for j in 0..groups {
            n.xg[c * groups + j] = 0.0;
        }
        for t in 0..q {
            n.xy[t * p + c] = 0.0;
        }
    }
    let dinv: Vec<f64> = match lambda {
        Some(l) => n.wg.iter().map(|&s| 1.0 / (s + l)).collect(),
        None => Vec::new(),
    };
    let mut schur = n.xx.clone();
    for a in 0..p {
        for b in 0..=a {
            let s: f64 = (0..groups)
                .map(|j| n.xg[a * groups + j] * n.xg[b * groups + j] * dinv[j])
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
        xg: n.xg,
        dinv,
        active,
    };
    let mut beta = vec![0.0; q * p];
    let mut gamma = vec![0.0; q * groups];
    for t in 0..q {
        let (b, g) = solver.solve(
            &n.xy[t * p..(t + 1) * p],
            &n.gy[t * groups..(t + 1) * groups],
        );
        beta[t * p..(t + 1) * p].copy_from_slice(&b);
        gamma[t * groups..(t + 1) * groups].copy_from_slice(&g);
    }
    let dof_used = p as f64
        + match lambda {
            Some(l) => n.wg.iter().map(|&s| s / (s + l)).sum::<f64>(),
            None => 0.0,
        };
    let mut model = Model {
        solver,
        beta,
        gamma,
        resid: Vec::new(),
        lambda,
        dof_used,
    };
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

/// [`accumulate`] without area columns (the first passes, and models without areas).
fn accumulate_dense(pop: &Population, rows: &[usize], w: &[f64], q: usize) -> Normal {
    let p = pop.p;
    let mut n = Normal {
        xx: vec![0.0; p * p],
        xg: Vec::new(),
        wg: Vec::new(),
        xy: vec![0.0; q * p],
        gy: Vec::new(),
    };
    let mut y = vec![0.0; q];
    for (r, &i) in rows.iter().enumerate() {
        let wi = w[r];
        let x = pop.row(i);
        targets(pop, i, &mut y);
        for a in 0..p {
            let wa = wi * x[a];
            for (cell, &xb) in n.xx[a * p..a * p + a + 1].iter_mut().zip(x) {
                *cell += wa * xb;
            }
        }
        for (t, &yt) in y.iter().enumerate() {
            let wy = wi * yt;
            for (cell, &xa) in n.xy[t * p..(t + 1) * p].iter_mut().zip(x) {
                *cell += wy * xa;
            }
        }
    }
    for a in 0..p {
        for b in 0..a {
            n.xx[b * p + a] = n.xx[a * p + b];
        }
    }
    n
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

    #[test]
    fn cholesky_solves_a_known_system() {
        // [[4,2],[2,3]] z = [2, 1] -> z = [0.5, 0]
        let l = cholesky(&[4.0, 2.0, 2.0, 3.0], 2);
        let z = chol_solve(&l, 2, &[2.0, 1.0]);
        assert!((z[0] - 0.5).abs() < 1e-9 && z[1].abs() < 1e-9, "{z:?}");
    }
}
