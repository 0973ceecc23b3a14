//! PNG plots of a report (the only functions of this crate that write files).
//!
//! * `fingerprint.png`: turnout × leader share heat map (ballots cast per 1-point cell, log colour
//!   scale with its colour bar), marginal histograms on top (turnout) and right (share).
//! * `integer_percent.png`: number of stations per 0.1-point bin of leader share and of turnout;
//!   spikes at whole percents are the integer-percentage anomaly.

use crate::fingerprint::BINS;
use crate::plot_font::ensure_font;
use crate::ForensicsReport;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Why a plot could not be written.
#[derive(Debug)]
pub struct PlotError(pub String);

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plot: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

fn err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError(e.to_string())
}

/// Writes every plot into `dir` (created if missing); returns the paths written.
pub fn write_plots(
    report: &ForensicsReport,
    dir: &Path,
    title: &str,
) -> Result<Vec<PathBuf>, PlotError> {
    std::fs::create_dir_all(dir).map_err(err)?;
    let fp = dir.join("fingerprint.png");
    plot_fingerprint(report, &fp, title)?;
    let ip = dir.join("integer_percent.png");
    plot_integer(report, &ip, title)?;
    Ok(vec![fp, ip])
}

/// Colour of a value in [0, 1] on a sequential scale (pale yellow -> orange -> red -> dark purple).
fn heat(t: f64) -> RGBColor {
    const ANCHORS: [(f64, [f64; 3]); 5] = [
        (0.0, [255.0, 247.0, 188.0]),
        (0.3, [254.0, 196.0, 79.0]),
        (0.55, [236.0, 112.0, 20.0]),
        (0.8, [189.0, 30.0, 45.0]),
        (1.0, [70.0, 0.0, 80.0]),
    ];
    let t = t.clamp(0.0, 1.0);
    for w in ANCHORS.windows(2) {
        let (t0, c0) = w[0];
        let (t1, c1) = w[1];
        if t <= t1 {
            let f = (t - t0) / (t1 - t0);
            let mix = |k: usize| (c0[k] + f * (c1[k] - c0[k])).round() as u8;
            return RGBColor(mix(0), mix(1), mix(2));
        }
    }
    RGBColor(70, 0, 80)
}

fn fmt_count(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Fingerprint heat map with marginal histograms and a colour bar.
pub fn plot_fingerprint(
    report: &ForensicsReport,
    path: &Path,
    title: &str,
) -> Result<(), PlotError> {
    ensure_font();
    let grid = &report.plot_data.fingerprint;
    if grid.len() != BINS * BINS {
        return Err(PlotError("report has no fingerprint grid".into()));
    }
    let root = BitMapBackend::new(path, (1100, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            &format!("{title} — election fingerprint (seed {})", report.seed),
            ("sans-serif", 26),
        )
        .map_err(err)?;
    let (body, legend_col) = root.split_horizontally(970);
    let (top, rest) = body.split_vertically(190);
    let (main, right) = rest.split_horizontally(770);
    let (top_main, _top_corner) = top.split_horizontally(770);

    let max = grid.iter().cloned().fold(0.0, f64::max).max(1.0);
    let lmax = max.log10();
    let lmin = (lmax - 4.0).max(0.0); // four decades shown; lighter cells drawn at the floor colour
    let leader = &report.leader;

    // Main heat map.
    let mut chart = ChartBuilder::on(&main)
        .margin_left(10)
        .margin_right(5)
        .margin_top(5)
        .margin_bottom(10)
        .x_label_area_size(55)
        .y_label_area_size(75)
        .build_cartesian_2d(0f64..100f64, 0f64..100f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("Turnout (% of registered voters)")
        .y_desc(format!("{leader}: share of valid votes (%)"))
        .axis_desc_style(("sans-serif", 20))
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(err)?;
    let w = 100.0 / BINS as f64;
    chart
        .draw_series(
            grid.iter()
                .enumerate()
                .filter(|(_, &v)| v > 0.0)
                .map(|(k, &v)| {
                    let i = (k / BINS) as f64;
                    let j = (k % BINS) as f64;
                    let t = ((v.log10() - lmin) / (lmax - lmin).max(1e-9)).clamp(0.0, 1.0);
                    Rectangle::new(
                        [(i * w, j * w), ((i + 1.0) * w, (j + 1.0) * w)],
                        heat(t).filled(),
                    )
                }),
        )
        .map_err(err)?;

    // Marginals (ballots cast per 1-point bin).
    let mut mt = vec![0.0f64; BINS];
    let mut ms = vec![0.0f64; BINS];
    for (k, &v) in grid.iter().enumerate() {
        mt[k / BINS] += v;
        ms[k % BINS] += v;
    }
    let mt_max = mt.iter().cloned().fold(0.0, f64::max).max(1.0) * 1.05;
    let ms_max = ms.iter().cloned().fold(0.0, f64::max).max(1.0) * 1.05;
    let bar = RGBColor(60, 90, 150);

    let mut top_chart = ChartBuilder::on(&top_main)
        .margin_left(10)
        .margin_right(5)
        .margin_top(10)
        .x_label_area_size(0)
        .y_label_area_size(75)
        .build_cartesian_2d(0f64..100f64, 0f64..mt_max)
        .map_err(err)?;
    top_chart
        .configure_mesh()
        .disable_mesh()
        .y_labels(4)
        .y_label_formatter(&|v| fmt_count(*v))
        .y_desc("Ballots")
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    top_chart
        .draw_series(mt.iter().enumerate().map(|(i, &v)| {
            Rectangle::new(
                [(i as f64 * w, 0.0), ((i as f64 + 1.0) * w, v)],
                bar.filled(),
            )
        }))
        .map_err(err)?;

    let mut right_chart = ChartBuilder::on(&right)
        .margin_left(18)
        .margin_top(5)
        .margin_bottom(10)
        .margin_right(15)
        .x_label_area_size(55)
        .y_label_area_size(0)
        .build_cartesian_2d(0f64..ms_max, 0f64..100f64)
        .map_err(err)?;
    right_chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(3)
        .x_label_formatter(&|v| fmt_count(*v))
        .x_desc("Ballots")
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    right_chart
        .draw_series(ms.iter().enumerate().map(|(j, &v)| {
            Rectangle::new(
                [(0.0, j as f64 * w), (v, (j as f64 + 1.0) * w)],
                bar.filled(),
            )
        }))
        .map_err(err)?;

    // Colour bar.
    colour_bar(&legend_col, lmin, lmax)?;

    // Fit summary under the title, in the top-right corner.
    if let Some(f) = &report.fingerprint.fit {
        let style = ("sans-serif", 15).into_font().color(&BLACK);
        let lines = [
            "Klimek model fit".to_string(),
            format!(
                "fi = {:.1}% [{:.1}, {:.1}]",
                100.0 * f.fi,
                100.0 * f.fi_ci[0],
                100.0 * f.fi_ci[1]
            ),
            format!(
                "fe = {:.2}% [{:.2}, {:.2}]",
                100.0 * f.fe,
                100.0 * f.fe_ci[0],
                100.0 * f.fe_ci[1]
            ),
            format!("{} stations", f.stations),
        ];
        for (k, l) in lines.iter().enumerate() {
            top.draw_text(l, &style, (785, 30 + 24 * k as i32))
                .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

fn colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lmin: f64,
    lmax: f64,
) -> Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let (_, lower) = area.split_vertically(190);
    let mut c = ChartBuilder::on(&lower)
        .margin_top(5)
        .margin_bottom(65)
        .margin_right(55)
        .y_label_area_size(0)
        .right_y_label_area_size(10)
        .x_label_area_size(0)
        .caption("Ballots per cell", ("sans-serif", 14))
        .build_cartesian_2d(0f64..1f64, lmin..lmax.max(lmin + 1e-9))
        .map_err(err)?;
    let steps = 100;
    let span = lmax - lmin;
    c.draw_series((0..steps).map(|k| {
        let y0 = lmin + span * k as f64 / steps as f64;
        let y1 = lmin + span * (k + 1) as f64 / steps as f64;
        Rectangle::new(
            [(0.0, y0), (1.0, y1)],
            heat((k as f64 + 0.5) / steps as f64).filled(),
        )
    }))
    .map_err(err)?;
    // Tick labels at powers of ten.
    let style = ("sans-serif", 14).into_font().color(&BLACK);
    let (bx, by) = lower.get_base_pixel();
    let mut p = lmin.ceil() as i32;
    while p as f64 <= lmax + 1e-9 {
        let (x, y) = c.backend_coord(&(1.0, p as f64));
        lower
            .draw_text(&fmt_count(10f64.powi(p)), &style, (x - bx + 6, y - by - 7))
            .map_err(err)?;
        p += 1;
    }
    Ok(())
}

/// Stations per 0.1-point bin of leader share and of turnout, with whole percents marked.
pub fn plot_integer(report: &ForensicsReport, path: &Path, title: &str) -> Result<(), PlotError> {
    ensure_font();
    let pd = &report.plot_data;
    if pd.share_hist_01.len() != 1000 || pd.turnout_hist_01.len() != 1000 {
        return Err(PlotError("report has no 0.1-point histograms".into()));
    }
    let it = &report.integer_test;
    let root = BitMapBackend::new(path, (1400, 950)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .titled(
            &format!(
                "{title} — integer percentages (seed {}): {} stations at whole percents, {:.0} expected, excess {:.0} ± {:.0}",
                report.seed, it.observed, it.expected, it.excess, it.mc_sd
            ),
            ("sans-serif", 22),
        )
        .map_err(err)?;
    let panels = root.split_evenly((2, 1));
    let series = [
        (
            &pd.share_hist_01,
            format!(
                "{}: share of valid votes (%), 0.1-point bins",
                report.leader
            ),
            RGBColor(189, 30, 45),
        ),
        (
            &pd.turnout_hist_01,
            "Turnout (%), 0.1-point bins".to_string(),
            RGBColor(40, 80, 160),
        ),
    ];
    for (panel, (hist, label, colour)) in panels.iter().zip(series) {
        let total: u64 = hist.iter().sum();
        // Show the range holding 99.8% of stations (plus a margin), so that spikes stay visible.
        let (mut lo, mut hi) = (0usize, 999usize);
        let mut acc = 0u64;
        for (k, &c) in hist.iter().enumerate() {
            acc += c;
            if acc as f64 > 0.001 * total as f64 {
                lo = k;
                break;
            }
        }
        acc = 0;
        for (k, &c) in hist.iter().enumerate().rev() {
            acc += c;
            if acc as f64 > 0.001 * total as f64 {
                hi = k;
                break;
            }
        }
        let x0 = ((lo as f64 / 10.0) - 2.0).max(0.0).floor();
        let x1 = ((hi as f64 + 1.0) / 10.0 + 2.0).min(100.0).ceil();
        let ymax = hist.iter().cloned().max().unwrap_or(1).max(1) as f64 * 1.08;
        let mut c = ChartBuilder::on(panel)
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, 0f64..ymax)
            .map_err(err)?;
        c.configure_mesh()
            .disable_mesh()
            .x_desc(label.as_str())
            .y_desc("Stations")
            .x_labels(20)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        // Light marks at whole percents.
        let mark = RGBColor(200, 200, 200);
        c.draw_series(((x0 as i32 + 1)..(x1 as i32)).map(|p| {
            PathElement::new(
                vec![(p as f64, 0.0), (p as f64, ymax)],
                mark.stroke_width(1),
            )
        }))
        .map_err(err)?;
        c.draw_series(LineSeries::new(
            hist.iter()
                .enumerate()
                .map(|(k, &v)| (k as f64 / 10.0 + 0.05, v as f64)),
            colour.stroke_width(1),
        ))
        .map_err(err)?
        .label("stations per 0.1-point bin")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
        c.configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 15))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
