//! Metrics with their baselines and targets, the JSON results file and the printed table.

use crate::stats::{Summary, ratio};
use serde::Serialize;

/// One measured (or skipped) quantity, as it appears in the JSON file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// Stable identifier, compared across commits (`exec.rest`, `baseline.docker_run`, ...).
    pub name: String,
    /// `ms`, `MiB`, `MiB/s`, `exec/s`, `sessions`, ...
    pub unit: String,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Number of samples (warm-up runs excluded).
    pub n: usize,
    /// The baseline metric this one is compared with.
    pub baseline: Option<String>,
    /// The baseline's median.
    pub baseline_p50: Option<f64>,
    /// `p50 / baseline_p50`.
    pub ratio: Option<f64>,
    /// The budget this metric has, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Whether the budget is met.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
    /// Why it was not measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Context (what bounded a run, totals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A performance budget (docs/design.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The median must not exceed this value.
    P50AtMost(f64),
    /// The 99th percentile must not exceed this value.
    P99AtMost(f64),
    /// The median must not exceed this multiple of the baseline's median.
    RatioAtMost(f64),
    /// The median must reach at least this value.
    AtLeast(f64),
    /// The median must reach at least this multiple of the baseline's median.
    RatioAtLeast(f64),
}

impl Target {
    fn describe(self, unit: &str) -> String {
        match self {
            Target::P50AtMost(v) => format!("p50 <= {v} {unit}"),
            Target::P99AtMost(v) => format!("p99 <= {v} {unit}"),
            Target::RatioAtMost(r) => format!("p50 <= {r}x baseline"),
            Target::AtLeast(v) => format!(">= {v} {unit}"),
            Target::RatioAtLeast(r) => format!("p50 >= {r}x baseline"),
        }
    }

    fn met_by(self, m: &Metric) -> bool {
        let le = |a: Option<f64>, b: f64| a.is_some_and(|a| a <= b);
        match self {
            Target::P50AtMost(v) => le(m.p50, v),
            Target::P99AtMost(v) => le(m.p99, v),
            Target::RatioAtMost(r) => le(m.ratio, r),
            Target::AtLeast(v) => m.p50.is_some_and(|p| p >= v),
            Target::RatioAtLeast(r) => m.ratio.is_some_and(|x| x >= r),
        }
    }
}

impl Metric {
    /// A metric from its samples; an error when there are none (a section that measured
    /// nothing is a failure, not a result).
    pub fn measured(name: &str, unit: &str, samples: &[f64]) -> anyhow::Result<Metric> {
        let s = Summary::of(samples)
            .ok_or_else(|| anyhow::anyhow!("{name}: no usable samples ({} collected)", samples.len()))?;
        Ok(Metric {
            p50: Some(s.p50),
            p90: Some(s.p90),
            p99: Some(s.p99),
            n: s.n,
            ..Metric::empty(name, unit)
        })
    }

    /// A metric that was not measured, and why.
    pub fn skipped(name: &str, unit: &str, why: impl Into<String>) -> Metric {
        Metric { skipped: Some(why.into()), ..Metric::empty(name, unit) }
    }

    fn empty(name: &str, unit: &str) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            p50: None,
            p90: None,
            p99: None,
            n: 0,
            baseline: None,
            baseline_p50: None,
            ratio: None,
            target: None,
            met: None,
            skipped: None,
            note: None,
        }
    }

    /// Compares this metric with `baseline` (same unit).
    pub fn vs(mut self, baseline: &Metric) -> Metric {
        self.baseline = Some(baseline.name.clone());
        self.baseline_p50 = baseline.p50;
        self.ratio = match (self.p50, baseline.p50) {
            (Some(v), Some(b)) => ratio(v, b),
            _ => None,
        };
        self
    }

    /// The same samples under another name, compared with another baseline.
    pub fn renamed_vs(&self, name: &str, baseline: &Metric) -> Metric {
        Metric { name: name.into(), target: None, met: None, ..self.clone() }.vs(baseline)
    }

    /// Gives the metric a budget and judges it.
    pub fn target(mut self, t: Target) -> Metric {
        self.target = Some(t.describe(&self.unit));
        self.met = Some(t.met_by(&self));
        self
    }

    /// Adds context.
    pub fn note(mut self, note: impl Into<String>) -> Metric {
        self.note = Some(note.into());
        self
    }
}

/// The machine a run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// Online CPUs.
    pub cpus: usize,
    /// `MemTotal`, MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// Docker daemon version.
    pub docker: String,
}

/// Everything one run produced: the JSON file's content.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `git rev-parse --short HEAD` of the repository the tool was built from, or `unknown`.
    pub commit: String,
    /// When the run started (UTC, RFC 3339).
    pub date: String,
    /// The machine.
    pub host: Host,
    /// The options the run used.
    pub options: serde_json::Value,
    /// One object per metric.
    pub metrics: Vec<Metric>,
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// The metrics as a fixed-width table, one line each, notes and skips at the end of the line.
pub fn table(metrics: &[Metric]) -> String {
    let w = metrics.iter().map(|m| m.name.len()).max().unwrap_or(6).max(6);
    let bw = metrics.iter().filter_map(|m| m.baseline.as_ref().map(String::len)).max().unwrap_or(8).max(8);
    let mut out = format!(
        "{:<w$}  {:<8} {:>8} {:>8} {:>8} {:>5}  {:<bw$} {:>9} {:>6}  {}\n",
        "metric", "unit", "p50", "p90", "p99", "n", "baseline", "base p50", "ratio", "target"
    );
    for m in metrics {
        if let Some(why) = &m.skipped {
            out += &format!("{:<w$}  {:<8} skipped: {why}\n", m.name, m.unit);
            continue;
        }
        let ratio = m.ratio.map_or("-".into(), |r| format!("{r:.2}x"));
        let target = match (&m.target, m.met) {
            (Some(t), Some(true)) => format!("{t}: met"),
            (Some(t), _) => format!("{t}: MISSED"),
            _ => String::new(),
        };
        let mut line = format!(
            "{:<w$}  {:<8} {:>8} {:>8} {:>8} {:>5}  {:<bw$} {:>9} {:>6}  {target}",
            m.name,
            m.unit,
            num(m.p50),
            num(m.p90),
            num(m.p99),
            m.n,
            m.baseline.as_deref().unwrap_or("-"),
            num(m.baseline_p50),
            ratio,
        );
        if let Some(note) = &m.note {
            line += &format!("  ({note})");
        }
        out += line.trim_end();
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bwrap() -> Metric {
        Metric::measured("baseline.bwrap", "ms", &[10.0, 12.0, 14.0]).unwrap()
    }

    #[test]
    fn ratio_is_p50_over_baseline_p50() {
        let m = Metric::measured("exec.rest", "ms", &[17.0, 18.0, 40.0]).unwrap().vs(&bwrap());
        assert_eq!(m.baseline.as_deref(), Some("baseline.bwrap"));
        assert_eq!(m.baseline_p50, Some(12.0));
        assert_eq!(m.ratio, Some(1.5));
    }

    #[test]
    fn ratio_targets_are_judged_on_the_ratio() {
        let at = Metric::measured("a", "ms", &[18.0]).unwrap().vs(&bwrap()).target(Target::RatioAtMost(1.5));
        assert_eq!(at.met, Some(true));
        let over =
            Metric::measured("a", "ms", &[18.1]).unwrap().vs(&bwrap()).target(Target::RatioAtMost(1.5));
        assert_eq!(over.met, Some(false));
        assert_eq!(over.target.as_deref(), Some("p50 <= 1.5x baseline"));
        let no_baseline = Metric::measured("a", "ms", &[1.0]).unwrap().target(Target::RatioAtMost(1.5));
        assert_eq!(no_baseline.met, Some(false), "no baseline cannot meet a ratio target");
    }

    #[test]
    fn absolute_targets() {
        let m = Metric::measured("rss", "MiB", &[5.0, 6.0, 11.0]).unwrap();
        assert_eq!(m.clone().target(Target::P50AtMost(10.0)).met, Some(true));
        assert_eq!(m.clone().target(Target::P99AtMost(10.0)).met, Some(false));
        assert_eq!(m.clone().target(Target::AtLeast(6.0)).met, Some(true));
        assert_eq!(m.clone().target(Target::AtLeast(6.5)).met, Some(false));
        let base = Metric::measured("b", "exec/s", &[10.0]).unwrap();
        assert_eq!(m.clone().vs(&base).target(Target::RatioAtLeast(0.6)).met, Some(true));
        assert_eq!(m.vs(&base).target(Target::RatioAtLeast(0.7)).met, Some(false));
    }

    #[test]
    fn no_samples_is_an_error() {
        let e = Metric::measured("exec.rest", "ms", &[]).unwrap_err();
        assert!(e.to_string().contains("exec.rest"), "{e}");
    }

    #[test]
    fn renamed_keeps_samples_and_drops_the_target() {
        let docker = Metric::measured("baseline.docker_exec", "ms", &[60.0]).unwrap();
        let m = Metric::measured("exec.rest", "ms", &[18.0])
            .unwrap()
            .vs(&bwrap())
            .target(Target::RatioAtMost(1.5));
        let r = m.renamed_vs("exec.rest.vs_docker_exec", &docker);
        assert_eq!((r.p50, r.n), (m.p50, m.n));
        assert_eq!(r.ratio, Some(0.3));
        assert_eq!((r.target, r.met), (None, None));
    }

    #[test]
    fn json_shape() {
        let m = Metric::measured("exec.rest", "ms", &[18.0])
            .unwrap()
            .vs(&bwrap())
            .target(Target::RatioAtMost(1.5));
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"name": "exec.rest", "unit": "ms", "p50": 18.0, "p90": 18.0, "p99": 18.0, "n": 1,
                   "baseline": "baseline.bwrap", "baseline_p50": 12.0, "ratio": 1.5,
                   "target": "p50 <= 1.5x baseline", "met": true})
        );
        let plain = serde_json::to_value(bwrap()).unwrap();
        assert_eq!(plain["baseline"], serde_json::Value::Null);
        assert_eq!(plain["ratio"], serde_json::Value::Null);
        assert!(plain.get("target").is_none() && plain.get("met").is_none());
        let skipped =
            serde_json::to_value(Metric::skipped("files.s3.upload.1MiB", "MiB/s", "no S3 store given"))
                .unwrap();
        assert_eq!(skipped["skipped"], "no S3 store given");
        assert_eq!((skipped["p50"].clone(), skipped["n"].clone()), (serde_json::Value::Null, json!(0)));
    }

    #[test]
    fn table_lines() {
        let m = Metric::measured("exec.rest", "ms", &[18.0])
            .unwrap()
            .vs(&bwrap())
            .target(Target::RatioAtMost(1.0));
        let s = table(&[bwrap(), m, Metric::skipped("files.s3.upload.1MiB", "MiB/s", "no S3 store given")]);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[2].contains("1.50x") && lines[2].ends_with("p50 <= 1x baseline: MISSED"),
            "{}",
            lines[2]
        );
        assert!(lines[3].ends_with("skipped: no S3 store given"), "{}", lines[3]);
    }
}
