//! Figures per scenario, metric and tool; the table, the JSON and the SVG chart.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
    /// A context figure, not a score.
    Info,
}

#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub scenario: String,
    pub name: String,
    pub unit: String,
    pub better: Better,
    /// Every counted round per tool.
    pub values: BTreeMap<String, Vec<f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

pub fn summarize(v: &[f64]) -> Option<Summary> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: s[0],
        max: s[n - 1],
        n,
    })
}

#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub metrics: Vec<Metric>,
    /// Free-text facts per scenario and tool (file counts and sizes, failures).
    pub notes: Vec<(String, String, String)>,
}

impl Results {
    pub fn push(
        &mut self,
        scenario: &str,
        name: &str,
        unit: &str,
        better: Better,
        tool: &str,
        v: f64,
    ) {
        let i = match self
            .metrics
            .iter()
            .position(|m| m.scenario == scenario && m.name == name)
        {
            Some(i) => i,
            None => {
                self.metrics.push(Metric {
                    scenario: scenario.into(),
                    name: name.into(),
                    unit: unit.into(),
                    better,
                    values: BTreeMap::new(),
                });
                self.metrics.len() - 1
            }
        };
        self.metrics[i]
            .values
            .entry(tool.into())
            .or_default()
            .push(v);
    }

    pub fn note(&mut self, scenario: &str, tool: &str, text: &str) {
        eprintln!("bench: note [{scenario}] {tool}: {text}");
        self.notes.push((scenario.into(), tool.into(), text.into()));
    }

    /// Adds the metrics and notes of an earlier JSON whose scenario is not in `skip`.
    pub fn merge_from(&mut self, path: &Path, skip: &[String]) -> Result<()> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let empty = Vec::new();
        let mut old = Results::default();
        for m in doc["metrics"].as_array().unwrap_or(&empty) {
            let scenario = m["scenario"].as_str().unwrap_or_default();
            let better = match m["better"].as_str() {
                Some("lower") => Better::Lower,
                Some("higher") => Better::Higher,
                _ => Better::Info,
            };
            for (tool, vals) in m["values"].as_object().into_iter().flatten() {
                for v in vals.as_array().unwrap_or(&empty) {
                    old.push(
                        scenario,
                        m["name"].as_str().unwrap_or_default(),
                        m["unit"].as_str().unwrap_or_default(),
                        better,
                        tool,
                        v.as_f64().unwrap_or(f64::NAN),
                    );
                }
            }
        }
        for n in doc["notes"].as_array().unwrap_or(&empty) {
            let f = |i: usize| n[i].as_str().unwrap_or_default().to_string();
            old.notes.push((f(0), f(1), f(2)));
        }
        old.metrics.retain(|m| !skip.contains(&m.scenario));
        old.notes.retain(|n| !skip.contains(&n.0));
        old.metrics.append(&mut self.metrics);
        old.notes.append(&mut self.notes);
        *self = old;
        Ok(())
    }

    /// walstream's median over Litestream's.
    pub fn ratio(m: &Metric) -> Option<f64> {
        let w = summarize(m.values.get("walstream")?)?.median;
        let l = summarize(m.values.get("litestream")?)?.median;
        (l != 0.0).then_some(w / l)
    }

    /// The table: one row per metric, median [min..max] per tool, and the ratio.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let cell = |v: Option<&Vec<f64>>| match v.and_then(|v| summarize(v)) {
            Some(s) if s.n > 1 => format!("{} [{}..{}]", fmt(s.median), fmt(s.min), fmt(s.max)),
            Some(s) => fmt(s.median),
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "| scenario | measure | unit | walstream median [min..max] | Litestream 0.5.17 median [min..max] | ratio w/L | rounds |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for m in &self.metrics {
            let mut w = cell(m.values.get("walstream"));
            let mut l = cell(m.values.get("litestream"));
            if let Some(v) = m.values.get("none") {
                w = format!("(no tool) {}", cell(Some(v)));
                l = "".into();
            }
            let ratio = Self::ratio(m)
                .map(|r| format!("{r:.2}"))
                .unwrap_or_default();
            let n = m.values.values().map(Vec::len).max().unwrap_or(0);
            let hint = match m.better {
                Better::Lower => " (lower is better)",
                Better::Higher => " (higher is better)",
                Better::Info => "",
            };
            let _ = writeln!(
                out,
                "| {} | {}{} | {} | {} | {} | {} | {} |",
                m.scenario, m.name, hint, m.unit, w, l, ratio, n
            );
        }
        for (s, t, n) in &self.notes {
            let _ = writeln!(out, "\n- {s}, {t}: {n}");
        }
        out
    }

    pub fn write_json(&self, path: &Path, meta: serde_json::Value) -> Result<()> {
        let metrics: Vec<serde_json::Value> = self
            .metrics
            .iter()
            .map(|m| {
                let summaries: BTreeMap<&String, Option<Summary>> =
                    m.values.iter().map(|(k, v)| (k, summarize(v))).collect();
                serde_json::json!({
                    "scenario": m.scenario, "name": m.name, "unit": m.unit, "better": m.better,
                    "values": m.values, "summary": summaries, "ratio_walstream_over_litestream": Self::ratio(m),
                })
            })
            .collect();
        let doc = serde_json::json!({ "meta": meta, "metrics": metrics, "notes": self.notes });
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// An SVG bar chart: for every scored metric with both tools, walstream's median over
    /// Litestream's on a log2 axis; left of 1 means walstream used less / was faster when lower
    /// is better. Bars are coloured by whether walstream is the better side.
    pub fn write_svg(&self, path: &Path, title: &str) -> Result<()> {
        use plotters::prelude::*;
        let rows: Vec<(String, f64, bool)> = self
            .metrics
            .iter()
            .filter(|m| m.better != Better::Info)
            .filter_map(|m| {
                let r = Self::ratio(m)?;
                if !r.is_finite() || r < 0.0 {
                    return None;
                }
                // Shown within 1/64..64 (a zero, e.g. no rows lost beside some, sits at 1/64).
                let r = r.clamp(1.0 / 64.0, 64.0);
                let good = match m.better {
                    Better::Lower => r <= 1.0,
                    _ => r >= 1.0,
                };
                let dir = if m.better == Better::Lower {
                    "lower"
                } else {
                    "higher"
                };
                Some((
                    format!("{}: {} ({dir} better)", m.scenario, m.name),
                    r.log2(),
                    good,
                ))
            })
            .collect();
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let h = 90 + 22 * rows.len() as u32;
        let root = SVGBackend::new(path, (1100, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let lim = rows.iter().map(|r| r.1.abs()).fold(1.0f64, f64::max).ceil();
        let n = rows.len().max(1) as i32;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(470)
            .build_cartesian_2d(-lim..lim, 0..n)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len().max(1))
            .y_label_formatter(&|i| {
                labels
                    .get((n - 1 - *i) as usize)
                    .cloned()
                    .unwrap_or_default()
            })
            .x_desc("walstream / Litestream 0.5.17 (medians, log2 axis)")
            .x_label_formatter(&|x| {
                let v = 2f64.powf(*x);
                if v >= 1.0 {
                    format!("{v:.0}x")
                } else {
                    format!("1/{:.0}", 1.0 / v)
                }
            })
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (_, x, good))| {
                let y = n - 1 - i as i32;
                let color = if *good {
                    RGBColor(40, 140, 60)
                } else {
                    RGBColor(200, 60, 40)
                };
                let (a, b) = if *x < 0.0 { (*x, 0.0) } else { (0.0, *x) };
                Rectangle::new([(a, y), (b, y + 1)], color.mix(0.8).filled())
            }))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}

/// Three significant figures, roughly.
pub fn fmt(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_median_spread_and_ratio() {
        let s = summarize(&[3.0, 1.0, 2.0, f64::NAN, 10.0]).expect("figures");
        assert_eq!((s.median, s.min, s.max, s.n), (2.5, 1.0, 10.0, 4));
        let mut r = Results::default();
        for v in [1.0, 2.0, 3.0] {
            r.push("s", "m", "s", Better::Lower, "walstream", v);
            r.push("s", "m", "s", Better::Lower, "litestream", v * 4.0);
        }
        assert_eq!(Results::ratio(&r.metrics[0]), Some(0.25));
        let t = r.table();
        assert!(t.contains("| s | m (lower is better) | s | 2.00 [1.00..3.00] | 8.00 [4.00..12.0] | 0.25 | 3 |"), "{t}");
        let dir = std::env::temp_dir().join(format!("bench-svg-{}", std::process::id()));
        let svg = dir.join("c.svg");
        r.write_svg(&svg, "t").expect("svg");
        let body = std::fs::read_to_string(&svg).expect("read svg");
        assert!(
            body.starts_with("<svg") && body.contains("s: m (lower better)"),
            "{body}"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
