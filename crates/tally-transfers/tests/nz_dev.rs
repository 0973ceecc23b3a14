//! Accuracy and interval coverage on real data with a known answer: the New Zealand 2020
//! development half (electorates 1-36, `../shared/data/ei-nz2020-dev`, scoring rule in its
//! README). Each method sees only the two margins per voting place; it is scored by the
//! misallocated share `Σ |est − true| / (2 · total)` per electorate, averaged over electorates,
//! and by how often its 95% interval covers the true proportion of a cell.
//!
//! Accuracy is measured on all 36 electorates (point estimates); interval coverage on every
//! ninth electorate (1, 10, 19, 28: a fixed subset chosen before looking at results) with
//! `NZ_BOOT` bootstrap replicates (default 20), to keep the test well under a minute in CI's
//! debug build (tally-transfers is optimised even there, see the workspace Cargo.toml).
//! Skipped (with a message) when the folder is absent; in CI it is present. `NZ_METHODS=a,b`
//! measures a subset of methods. em's default interval (the sandwich) needs no re-solve, so its
//! coverage is also measured on all 36; `NZ_EM_BOOT=1` measures em's re-solving bootstrap
//! instead, `NZ_NEWTON=1` em run to its fixed point by Newton's method.

#![allow(clippy::needless_range_loop)]

#[path = "common/nz.rs"]
mod nz;

use std::time::Instant;
use tally_transfers::{estimate, Method, Options, DEFAULT_METHOD};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn r_interval_kind(boot: bool) -> &'static str {
    if boot {
        "bootstrap"
    } else {
        "sandwich"
    }
}

#[test]
fn nz_dev_half_accuracy_and_coverage() {
    let Some(dir) = nz::dir() else {
        println!("skipped: ../shared/data/ei-nz2020-dev is not present");
        return;
    };
    let electorates = nz::load(&dir);
    assert_eq!(
        electorates.len(),
        36,
        "the development half has 36 electorates"
    );
    let boot = env("NZ_BOOT", 20);
    let methods: Vec<Method> = std::env::var("NZ_METHODS")
        .map(|v| v.split(",").map(|m| m.parse().unwrap()).collect())
        .unwrap_or(vec![
            Method::Lphom,
            Method::Tslphom,
            Method::Nslphom,
            Method::Em,
        ]);
    println!(
        "| method | mean misallocation (36) | worst electorate | 95% bootstrap interval covers the true cell (4 electorates) | time |\n|---|---|---|---|---|"
    );
    let mut default_mean = f64::NAN;
    for method in methods {
        let t = Instant::now();
        let (mut sum, mut worst, mut covered, mut cells) = (0.0, 0.0f64, 0usize, 0usize);
        // em's default interval needs no re-solve: measured on all 36 electorates too.
        let (mut covered_all, mut cells_all) = (0usize, 0usize);
        let em_boot = std::env::var("NZ_EM_BOOT").is_ok();
        for (k, e) in electorates.iter().enumerate() {
            let with_interval = k % 9 == 0;
            let sandwich = method == Method::Em && !em_boot;
            let opts = Options {
                method,
                bootstrap: if with_interval || sandwich { boot } else { 0 },
                bootstrap_unit_budget: 0,
                em_bootstrap: em_boot,
                em: tally_transfers::EmConfig {
                    newton: std::env::var("NZ_NEWTON").is_ok(),
                    ..Default::default()
                },
                ..Options::default()
            };
            let r = estimate(&e.margins, &opts).unwrap();
            let mis = nz::misallocation(&r.votes, &e.truth);
            if std::env::var("NZ_VERBOSE").is_ok() {
                if let Some(em) = &r.em {
                    println!(
                        "{}: {mis:.2}% em {} steps, change {:.1e}, ll change {:.1e}; {}",
                        e.name, em.iterations, em.max_change, em.loglik_change, r.interval
                    );
                }
            }
            sum += mis;
            worst = worst.max(mis);
            if !with_interval && !sandwich {
                continue;
            }
            let (cov, n) = nz::coverage(&r, &e.truth);
            covered_all += cov;
            cells_all += n;
            if with_interval {
                covered += cov;
                cells += n;
            }
        }
        if method == Method::Em && cells_all > cells {
            println!(
                "em ({}): the interval covers {:.1}% of {cells_all} cells on all 36 electorates",
                r_interval_kind(em_boot),
                100.0 * covered_all as f64 / cells_all as f64
            );
        }
        let mean = sum / electorates.len() as f64;
        if method == DEFAULT_METHOD {
            default_mean = mean;
        }
        println!(
            "| {}{} | {mean:.2}% | {worst:.2}% | {:.1}% of {cells} cells | {:.1} s |",
            method.name(),
            if method == DEFAULT_METHOD {
                " (default)"
            } else {
                ""
            },
            100.0 * covered as f64 / cells as f64,
            t.elapsed().as_secs_f64()
        );
    }
    assert!(
        default_mean <= 10.5,
        "default {} misallocates {default_mean:.2}% on the NZ dev half (goal 10.5%)",
        DEFAULT_METHOD.name()
    );
}
