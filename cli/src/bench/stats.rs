//! Latency summaries: the percentiles of the table and the curve of the plot.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Percentiles at which the plot samples the distribution: 0, 50, 75, ...
/// each step halving what is left, up to 99.9999.
fn curve_points() -> Vec<f64> {
    let mut v = vec![0.0];
    let mut rest = 1.0f64;
    while rest > 1e-6 {
        rest /= 2.0;
        v.push(100.0 * (1.0 - rest));
    }
    v.push(100.0);
    v
}

/// One latency distribution, in nanoseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
    /// `(percentile, nanoseconds)` pairs for plotting.
    pub curve: Vec<(f64, u64)>,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        Latency {
            samples: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            curve: curve_points()
                .into_iter()
                .map(|p| (p, h.value_at_percentile(p)))
                .collect(),
        }
    }

    /// One line for the worker's report.
    pub fn encode(&self) -> String {
        let mut s = format!(
            "{} {} {} {} {} {} {}",
            self.samples, self.p50, self.p90, self.p99, self.p999, self.p9999, self.max
        );
        for (p, v) in &self.curve {
            s += &format!(" {p}:{v}");
        }
        s
    }

    pub fn decode(line: &str) -> Option<Self> {
        let mut it = line.split(' ');
        let mut n = || it.next()?.parse::<u64>().ok();
        let (samples, p50, p90, p99, p999, p9999, max) = (n()?, n()?, n()?, n()?, n()?, n()?, n()?);
        let curve = line
            .split(' ')
            .skip(7)
            .map(|pv| {
                let (p, v) = pv.split_once(':')?;
                Some((p.parse().ok()?, v.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Latency {
            samples,
            p50,
            p90,
            p99,
            p999,
            p9999,
            max,
            curve,
        })
    }
}

/// Nanoseconds for humans: "240 ns", "3.1 us", "12 ms".
pub fn human_ns(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{:.1} us", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        for v in [100, 200, 300, 5_000, 1_000_000] {
            h.record(v).unwrap();
        }
        let l = Latency::from_histogram(&h);
        let d = Latency::decode(&l.encode()).unwrap();
        assert_eq!((d.samples, d.p50, d.max), (5, l.p50, l.max));
        assert_eq!(d.curve.len(), l.curve.len());
        assert!(l
            .curve
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn human_units() {
        assert_eq!(human_ns(240), "240 ns");
        assert_eq!(human_ns(3_100), "3.1 us");
        assert_eq!(human_ns(12_000_000), "12.0 ms");
    }
}
