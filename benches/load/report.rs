//! The report: medians over rounds with their spread, ratios to nginx and to the direct path,
//! the speed goals checked, and one SVG chart per scenario.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::targets::Kind;

/// One measured figure.
#[derive(Clone, Debug)]
pub struct Metric {
    /// Name with unit, e.g. `req/s`.
    pub name: String,
    /// Value.
    pub value: f64,
    /// Whether more is better.
    pub higher_better: bool,
}

impl Metric {
    /// A figure.
    pub fn new(name: &str, value: f64, higher_better: bool) -> Metric {
        Metric {
            name: name.to_string(),
            value,
            higher_better,
        }
    }
}

/// One run of one scenario against one system.
pub struct Sample {
    /// Scenario name.
    pub scenario: String,
    /// System.
    pub kind: Kind,
    /// Round number, from 1.
    pub round: usize,
    /// Figures.
    pub metrics: Vec<Metric>,
    /// Failed operations.
    pub failures: u64,
    /// First failure.
    pub first_error: Option<String>,
    /// Share of core 1 (generator + upstream) used, 1.0 = saturated.
    pub core_busy: f64,
}

impl Sample {
    /// One progress line.
    pub fn line(&self) -> String {
        let figures: Vec<String> = self
            .metrics
            .iter()
            .map(|m| format!("{}={:.1}", m.name, m.value))
            .collect();
        format!(
            "{} {} round {}: {} failures={}{}",
            self.scenario,
            self.kind.name(),
            self.round,
            figures.join(" "),
            self.failures,
            self.first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        )
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}

/// Median, min and max of one figure over rounds.
#[derive(Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(values: &mut [f64]) -> Option<Stat> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    Some(Stat {
        median,
        min: values[0],
        max: values[n - 1],
    })
}

fn stat_of(samples: &[Sample], scenario: &str, kind: Kind, metric: &str) -> Option<Stat> {
    let mut v: Vec<f64> = samples
        .iter()
        .filter(|s| s.scenario == scenario && s.kind == kind)
        .filter_map(|s| s.get(metric))
        .collect();
    stat(&mut v)
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The figure each scenario's chart shows.
fn headline(scenario: &str) -> &'static str {
    match scenario {
        "negotiate-latency" => "p50 µs",
        "negotiate-keepalive" | "negotiate-new-conn" => "proxy CPU µs/req",
        "connect-storm" => "conn/s",
        "echo" => "proxy CPU µs/msg",
        "idle" | "active" => "proxy KB/conn",
        _ => "SSE p99 µs",
    }
}

/// Writes `report.md` and the charts under `out`; returns the report's path.
pub fn write(
    out: &Path,
    scenarios: &[(String, String)],
    kinds: &[Kind],
    samples: &[Sample],
    notes: &[String],
    rounds: usize,
) -> Result<PathBuf, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut md = String::new();
    let _ = writeln!(md, "# signalr-edge load report\n");
    let _ = writeln!(
        md,
        "Written by `cargo bench --bench load` (benches/load/). Each scenario ran {rounds} round(s) \
         against each system in turn (A B C D, A B C D, ...), each run on a fresh process and a \
         fresh upstream. Cells are medians over the rounds with [min–max]. Only 127.0.0.1 is used.\n"
    );
    for n in notes {
        let _ = writeln!(md, "- {n}");
    }
    let _ = writeln!(
        md,
        "\nThe figures that decide are the proxy's CPU µs per unit (from `/proc/PID/stat` over the \
         run) and its KB per connection: on two cores the generator and the upstream share one \
         core, and when it is saturated (marked †, ≥ 90 % busy) they, not the proxy, set the \
         throughput and latency. Run-to-run noise here is 20 % or more.\n"
    );
    goals(&mut md, samples);
    for (scenario, description) in scenarios {
        let _ = writeln!(md, "\n## {scenario}\n\n{description}\n");
        let names = metric_names(samples, scenario);
        if names.is_empty() {
            let _ = writeln!(md, "No results.");
            continue;
        }
        let chart = format!("{scenario}.svg");
        match draw(&out.join(&chart), scenario, kinds, samples) {
            Ok(()) => {
                let _ = writeln!(md, "![{}]({chart})\n", headline(scenario));
            }
            Err(e) => {
                let _ = writeln!(md, "(chart failed: {e})\n");
            }
        }
        let _ = write!(md, "| system |");
        for n in &names {
            let _ = write!(md, " {n} |");
        }
        let _ = writeln!(md, " failures |");
        let _ = writeln!(md, "|---|{}---|", "---|".repeat(names.len()));
        for &kind in kinds {
            let rows: Vec<&Sample> = samples
                .iter()
                .filter(|s| &s.scenario == scenario && s.kind == kind)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let bounded = rows.iter().any(|s| s.core_busy >= 0.9);
            let _ = write!(md, "| {}{} |", kind.name(), if bounded { " †" } else { "" });
            for n in &names {
                match stat_of(samples, scenario, kind, n) {
                    Some(s) => {
                        let _ = write!(md, " {} [{}–{}] |", fmt(s.median), fmt(s.min), fmt(s.max));
                    }
                    None => {
                        let _ = write!(md, " – |");
                    }
                }
            }
            let failed: u64 = rows.iter().map(|s| s.failures).sum();
            let _ = writeln!(md, " {failed} |");
        }
        ratios(&mut md, samples, scenario, &names);
        for s in samples.iter().filter(|s| &s.scenario == scenario) {
            if let Some(e) = &s.first_error {
                let _ = writeln!(
                    md,
                    "\n{} round {}: {} failures, first: `{e}`",
                    s.kind.name(),
                    s.round,
                    s.failures
                );
            }
        }
    }
    let path = out.join("report.md");
    std::fs::write(&path, md).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn metric_names(samples: &[Sample], scenario: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in samples.iter().filter(|s| s.scenario == scenario) {
        for m in &s.metrics {
            if !names.contains(&m.name) {
                names.push(m.name.clone());
            }
        }
    }
    names
}

fn ratios(md: &mut String, samples: &[Sample], scenario: &str, names: &[String]) {
    for (base, label) in [
        (Kind::Nginx, "nginx"),
        (Kind::Haproxy, "haproxy"),
        (Kind::Direct, "direct"),
    ] {
        let parts: Vec<String> = names
            .iter()
            .filter(|n| !n.contains("CPU %"))
            .filter_map(|n| {
                let e = stat_of(samples, scenario, Kind::Edge, n)?;
                let b = stat_of(samples, scenario, base, n)?;
                let higher = samples
                    .iter()
                    .flat_map(|s| &s.metrics)
                    .find(|m| m.name == **n)
                    .is_some_and(|m| m.higher_better);
                let better = if higher {
                    e.median >= b.median
                } else {
                    e.median <= b.median
                };
                (b.median > 0.0).then(|| {
                    format!(
                        "{n} {:.2}× ({})",
                        e.median / b.median,
                        if better { "better" } else { "worse" }
                    )
                })
            })
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(md, "\nsignalr-edge / {label}: {}.", parts.join(", "));
        }
    }
}

/// Checks the goals on the medians.
fn goals(md: &mut String, samples: &[Sample]) {
    let m = |scenario: &str, kind: Kind, metric: &str| {
        stat_of(samples, scenario, kind, metric).map(|s| s.median)
    };
    let mut rows = Vec::new();
    let mut check = |goal: String, edge: Option<f64>, peer: Option<f64>, higher: bool| {
        if let (Some(e), Some(p)) = (edge, peer) {
            let met = if higher { e >= p } else { e <= p };
            rows.push(format!(
                "| {goal} | {} | {} | {} |",
                fmt(e),
                fmt(p),
                if met { "yes" } else { "**no**" }
            ));
        }
    };
    let neg = "negotiate-keepalive";
    for peer in [Kind::Nginx, Kind::Haproxy] {
        let p = peer.name();
        check(
            format!("negotiate req/s ≥ {p}"),
            m(neg, Kind::Edge, "req/s"),
            m(neg, peer, "req/s"),
            true,
        );
        check(
            format!("negotiate proxy CPU µs/req ≤ {p}"),
            m(neg, Kind::Edge, "proxy CPU µs/req"),
            m(neg, peer, "proxy CPU µs/req"),
            false,
        );
        check(
            format!("negotiate p99 µs ≤ {p}"),
            m(neg, Kind::Edge, "p99 µs"),
            m(neg, peer, "p99 µs"),
            false,
        );
    }
    check(
        "echo msg/s ≥ nginx".into(),
        m("echo", Kind::Edge, "msg/s"),
        m("echo", Kind::Nginx, "msg/s"),
        true,
    );
    check(
        "echo proxy CPU µs/msg ≤ nginx".into(),
        m("echo", Kind::Edge, "proxy CPU µs/msg"),
        m("echo", Kind::Nginx, "proxy CPU µs/msg"),
        false,
    );
    check(
        "echo RTT p99 µs ≤ nginx".into(),
        m("echo", Kind::Edge, "RTT p99 µs"),
        m("echo", Kind::Nginx, "RTT p99 µs"),
        false,
    );
    check(
        "idle KB/conn ≤ nginx".into(),
        m("idle", Kind::Edge, "proxy KB/conn"),
        m("idle", Kind::Nginx, "proxy KB/conn"),
        false,
    );
    check(
        "idle KB/conn ≤ haproxy (aim)".into(),
        m("idle", Kind::Edge, "proxy KB/conn"),
        m("idle", Kind::Haproxy, "proxy KB/conn"),
        false,
    );
    check(
        "idle KB/conn ≤ 8 (aim)".into(),
        m("idle", Kind::Edge, "proxy KB/conn"),
        Some(8.0),
        false,
    );
    check(
        "active KB/conn ≤ 1.2 × idle".into(),
        m("active", Kind::Edge, "proxy KB/conn"),
        m("idle", Kind::Edge, "proxy KB/conn").map(|v| v * 1.2),
        false,
    );
    let storm_failures: Option<f64> = samples
        .iter()
        .filter(|x| x.scenario == "connect-storm" && x.kind == Kind::Edge)
        .map(|x| x.failures as f64)
        .reduce(f64::max);
    check(
        "connect storm failures = 0".into(),
        storm_failures,
        Some(0.0),
        false,
    );
    let lat = "negotiate-latency";
    if let (Some(e), Some(d)) = (m(lat, Kind::Edge, "p50 µs"), m(lat, Kind::Direct, "p50 µs")) {
        rows.push(format!(
            "| negotiate p50 added over direct < 100 µs (one client) | {} | {} (direct p50) | {} |",
            fmt(e - d),
            fmt(d),
            if e - d < 100.0 { "yes" } else { "**no**" }
        ));
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Goals (medians)\n\n| goal | signalr-edge | peer | met |\n|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(md, "{r}");
    }
}

fn draw(path: &Path, scenario: &str, kinds: &[Kind], samples: &[Sample]) -> Result<(), String> {
    let metric = headline(scenario);
    let bars: Vec<(Kind, Stat)> = kinds
        .iter()
        .filter_map(|&k| stat_of(samples, scenario, k, metric).map(|s| (k, s)))
        .collect();
    if bars.is_empty() {
        return Err(format!("no {metric} figures"));
    }
    let top = bars.iter().map(|(_, s)| s.max).fold(0.0, f64::max).max(1.0) * 1.15;
    let root = SVGBackend::new(path, (640, 360)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let n = bars.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{scenario}: {metric} (median, min–max)"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)
        .map_err(|e| e.to_string())?;
    let names: Vec<&str> = bars.iter().map(|(k, _)| k.name()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < names.len() {
                names[i].to_string()
            } else {
                String::new()
            }
        })
        .y_desc(metric)
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (kind, s)) in bars.iter().enumerate() {
        let x = i as f64;
        let color = if *kind == Kind::Edge {
            RGBColor(230, 120, 20)
        } else {
            RGBColor(90, 120, 180)
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x + 0.2, 0.0), (x + 0.8, s.median)],
                color.filled(),
            )))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x + 0.5, s.min), (x + 0.5, s.max)],
                BLACK.stroke_width(2),
            )))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
