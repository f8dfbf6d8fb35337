//! Percentiles of samples (sorted, linear interpolation between closest ranks) and rates.

/// The p50, p90 and p99 of a sample, and its size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Number of samples.
    pub n: usize,
}

/// The `q` quantile (0 ≤ q ≤ 1) of ascending `sorted` samples: the value at rank
/// `q × (n − 1)`, interpolated linearly between the two closest ranks (so the p50 of an even
/// count is the mean of the middle two). `None` for no samples.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = q.clamp(0.0, 1.0) * last as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64))
}

impl Summary {
    /// Summarises `samples` (any order). `None` when there are none or one is not finite.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.iter().any(|s| !s.is_finite()) {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Summary {
            p50: quantile(&sorted, 0.5)?,
            p90: quantile(&sorted, 0.9)?,
            p99: quantile(&sorted, 0.99)?,
            n: sorted.len(),
        })
    }
}

/// `value / baseline`, or `None` when the baseline is not a positive number.
pub fn ratio(value: f64, baseline: f64) -> Option<f64> {
    (baseline > 0.0 && baseline.is_finite() && value.is_finite()).then(|| value / baseline)
}

/// Completions per second in each whole `window` (seconds) of a run lasting `duration`
/// seconds, from the completion times (seconds since the run began). Completions after the
/// last whole window are not counted; a run shorter than one window has no rate.
pub fn window_rates(completions: &[f64], duration: f64, window: f64) -> Vec<f64> {
    if window <= 0.0 {
        return Vec::new();
    }
    let windows = (duration / window).floor() as usize;
    let mut counts = vec![0usize; windows];
    for &t in completions {
        if t >= 0.0 {
            let i = (t / window).floor() as usize;
            if let Some(c) = counts.get_mut(i) {
                *c += 1;
            }
        }
    }
    counts.into_iter().map(|c| c as f64 / window).collect()
}

/// MiB per second for `bytes` moved in `seconds`.
pub fn mib_per_sec(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert!(close(quantile(&v, 0.5).unwrap(), 5.5));
        assert!(close(quantile(&v, 0.9).unwrap(), 9.1));
        assert!(close(quantile(&v, 0.99).unwrap(), 9.91));
        assert!(close(quantile(&v, 0.0).unwrap(), 1.0));
        assert!(close(quantile(&v, 1.0).unwrap(), 10.0));
    }

    #[test]
    fn odd_count_median_is_the_middle_sample() {
        assert!(close(quantile(&[1.0, 2.0, 100.0], 0.5).unwrap(), 2.0));
    }

    #[test]
    fn no_samples_no_quantile() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn summary_sorts_first() {
        let s = Summary::of(&[30.0, 10.0, 20.0, 40.0, 50.0]).unwrap();
        assert!(close(s.p50, 30.0));
        assert!(close(s.p90, 46.0));
        assert!(close(s.p99, 49.6));
        assert_eq!(s.n, 5);
    }

    #[test]
    fn one_sample_is_every_percentile() {
        let s = Summary::of(&[7.0]).unwrap();
        assert_eq!((s.p50, s.p90, s.p99, s.n), (7.0, 7.0, 7.0, 1));
    }

    #[test]
    fn a_non_finite_sample_is_refused() {
        assert_eq!(Summary::of(&[1.0, f64::NAN]), None);
        assert_eq!(Summary::of(&[1.0, f64::INFINITY]), None);
    }

    #[test]
    fn ratios() {
        assert!(close(ratio(18.0, 12.0).unwrap(), 1.5));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(1.0, -2.0), None);
        assert_eq!(ratio(f64::NAN, 2.0), None);
    }

    #[test]
    fn rates_per_whole_window() {
        // 3 in the first second, 1 in the second, one after the end of the last whole window.
        let r = window_rates(&[0.1, 0.5, 0.99, 1.2, 2.1], 2.5, 1.0);
        assert_eq!(r, vec![3.0, 1.0]);
        let half = window_rates(&[0.1, 0.2, 0.6], 1.0, 0.5);
        assert_eq!(half, vec![4.0, 2.0]);
        assert!(window_rates(&[0.1], 0.5, 1.0).is_empty());
    }

    #[test]
    fn throughput_in_mib() {
        assert!(close(mib_per_sec(100 << 20, 2.0), 50.0));
    }
}
