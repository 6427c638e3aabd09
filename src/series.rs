//! One metric's history as columns (no object per point), and the sample of it a plot needs.

use std::cmp::Ordering;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::entities::{Metric, Number};

/// Points of one metric of one run, column by column.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub timestamps: Vec<Number>,
    pub steps: Vec<Number>,
    pub values: Vec<f64>,
}

impl Series {
    pub fn with_capacity(capacity: usize) -> Series {
        Series {
            timestamps: Vec::with_capacity(capacity),
            steps: Vec::with_capacity(capacity),
            values: Vec::with_capacity(capacity),
        }
    }

    pub fn push(&mut self, timestamp: Number, step: Number, value: f64) {
        self.timestamps.push(timestamp);
        self.steps.push(step);
        self.values.push(value);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn from_metrics(metrics: Vec<Metric>) -> Series {
        let mut series = Series::with_capacity(metrics.len());
        for metric in metrics {
            series.push(metric.timestamp, metric.step, metric.value);
        }
        series
    }

    /// The same points ordered by step, then timestamp (a plot's x axis).
    pub fn by_step(self) -> Series {
        self.sorted_by(|s, a, b| {
            s.steps[a]
                .cmp_value(s.steps[b])
                .then(s.timestamps[a].cmp_value(s.timestamps[b]))
        })
    }

    /// The same points in MLflow's history order: timestamp, step, value. A NaN and a 0
    /// tie there (both stored as 0); SQLite reads them through the primary key, which puts
    /// the 0 (`is_nan` unset) first.
    pub fn by_time(self) -> Series {
        self.sorted_by(|s, a, b| {
            s.timestamps[a]
                .cmp_value(s.timestamps[b])
                .then(s.steps[a].cmp_value(s.steps[b]))
                .then(as_stored(s.values[a]).total_cmp(&as_stored(s.values[b])))
                .then(s.values[a].is_nan().cmp(&s.values[b].is_nan()))
        })
    }

    /// Already in order (the usual case: a metric's timestamps grow with its steps) costs
    /// one pass and no copy.
    fn sorted_by(self, order: impl Fn(&Series, usize, usize) -> Ordering) -> Series {
        let in_order = (1..self.len()).all(|i| order(&self, i - 1, i) != Ordering::Greater);
        if in_order {
            return self;
        }
        let mut indices: Vec<usize> = (0..self.len()).collect();
        indices.sort_by(|&a, &b| order(&self, a, b));
        self.select(&indices)
    }

    pub fn select(&self, indices: &[usize]) -> Series {
        let mut out = Series::with_capacity(indices.len());
        for &index in indices {
            out.push(
                self.timestamps[index],
                self.steps[index],
                self.values[index],
            );
        }
        out
    }
}

/// The value SQL orders a NaN point by: MLflow stores it as 0 with `is_nan` set.
fn as_stored(value: f64) -> f64 {
    if value.is_nan() {
        0.0
    } else {
        value
    }
}

/// At most `max_points` of a step-ordered series that keep the shape of its curve: the
/// points are cut into consecutive buckets, and each bucket keeps its first and last point,
/// its lowest and highest value (infinities included) and its first NaN. The series' own
/// minimum and maximum are therefore always kept. Returns indices in step order.
pub fn sample(series: &Series, max_points: usize) -> Vec<usize> {
    let count = series.len();
    if count <= max_points {
        return (0..count).collect();
    }
    if max_points == 0 {
        return Vec::new();
    }
    let has_nan = series.values.iter().any(|v| v.is_nan());
    let per_bucket = if has_nan { 5 } else { 4 };
    let buckets = (max_points / per_bucket).max(1);
    let mut kept = Vec::with_capacity(buckets * per_bucket);
    for bucket in 0..buckets {
        let start = bucket * count / buckets;
        let end = (bucket + 1) * count / buckets;
        if start == end {
            continue;
        }
        let mut chosen = [start, end - 1, usize::MAX, usize::MAX, usize::MAX];
        let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
        for (index, &value) in series.values[start..end].iter().enumerate() {
            let index = start + index;
            if value.is_nan() {
                if chosen[4] == usize::MAX {
                    chosen[4] = index;
                }
                continue;
            }
            if chosen[2] == usize::MAX || value < low {
                low = value;
                chosen[2] = index;
            }
            if chosen[3] == usize::MAX || value > high {
                high = value;
                chosen[3] = index;
            }
        }
        let mut chosen: Vec<usize> = chosen.into_iter().filter(|&i| i != usize::MAX).collect();
        chosen.sort_unstable();
        chosen.dedup();
        kept.extend(chosen);
    }
    // A point at the edge of the budget may be cut: the extremes stay.
    if kept.len() > max_points {
        kept.truncate(max_points);
    }
    kept
}

/// Indices of the points whose step lies in `[first, last]` (either end open).
pub fn within_steps(series: &Series, first: Option<i64>, last: Option<i64>) -> Vec<usize> {
    let inside = |step: Number| {
        let step = match step {
            Number::Int(i) => i as f64,
            Number::Real(r) => r,
        };
        first.is_none_or(|f| step >= f as f64) && last.is_none_or(|l| step <= l as f64)
    };
    (0..series.len())
        .filter(|&i| inside(series.steps[i]))
        .collect()
}

/// Histories read lately, by (run, key), kept in step order so that a plot's sample of a
/// long series needs no read from the store. Bounded by points; the least recently read
/// series go first. The owner empties it when someone else changed the store, and drops a
/// series when it writes points of it.
/// A series and when it was last read.
type Cached = (Arc<Series>, u64);

#[derive(Default)]
pub struct SeriesCache {
    entries: FxHashMap<(Box<str>, Box<str>), Cached>,
    points: usize,
    reads: u64,
}

/// About 40 bytes a point: 100 MB at most.
pub const CACHED_POINTS: usize = 2_500_000;

impl SeriesCache {
    pub fn get(&mut self, run_id: &str, key: &str) -> Option<Arc<Series>> {
        self.reads += 1;
        let reads = self.reads;
        let (series, used) = self.entries.get_mut(&(run_id.into(), key.into()))?;
        *used = reads;
        Some(series.clone())
    }

    pub fn put(&mut self, run_id: &str, key: &str, series: Arc<Series>) {
        if series.len() > CACHED_POINTS {
            return;
        }
        self.forget(run_id, key);
        self.points += series.len();
        while self.points > CACHED_POINTS {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((gone, _)) = self.entries.remove(&oldest) {
                self.points -= gone.len();
            }
        }
        self.reads += 1;
        self.entries
            .insert((run_id.into(), key.into()), (series, self.reads));
    }

    pub fn forget(&mut self, run_id: &str, key: &str) {
        if let Some((gone, _)) = self.entries.remove(&(run_id.into(), key.into())) {
            self.points -= gone.len();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.points = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The order MLflow's store samples and filters a history by: step, timestamp, the value as
/// stored (a NaN is a 0 with `is_nan` set) and `is_nan`, which is the whole primary key within
/// one run and key, so no two stored points tie.
pub fn by_stored_key(series: Series) -> Series {
    series.sorted_by(|s, a, b| {
        let (va, vb) = (s.values[a], s.values[b]);
        s.steps[a]
            .cmp_value(s.steps[b])
            .then(s.timestamps[a].cmp_value(s.timestamps[b]))
            .then(
                as_stored(va)
                    .partial_cmp(&as_stored(vb))
                    .unwrap_or(Ordering::Equal),
            )
            .then(va.is_nan().cmp(&vb.is_nan()))
    })
}

/// The index range of the points whose step lies in `[first, last]`, in a series ordered by
/// step; the comparison is SQLite's (an integer bound against a real step compares exactly).
pub fn step_range(series: &Series, first: i64, last: i64) -> std::ops::Range<usize> {
    let start = series
        .steps
        .partition_point(|s| s.cmp_value(Number::Int(first)) == Ordering::Less);
    let end = series
        .steps
        .partition_point(|s| s.cmp_value(Number::Int(last)) != Ordering::Greater);
    start..end.max(start)
}

/// Indices of the points whose step is one of `steps`, for a series ordered by step.
pub fn at_steps(series: &Series, steps: &[i64]) -> Vec<usize> {
    let mut wanted = steps.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    (0..series.len())
        .filter(|&i| {
            let step = series.steps[i];
            wanted
                .binary_search_by(|w| Number::Int(*w).cmp_value(step))
                .is_ok()
        })
        .collect()
}

/// The points MLflow 3.17.2's SQL store keeps of `count` ordered points for a chart of at
/// most `max_results`: SQL's `NTILE(max_results)` cuts them into buckets as even as
/// possible (the larger ones first) and the first point of each is kept; the last point
/// replaces the last kept one when it is not already kept, so the curve's end is shown.
pub fn mlflow_interval_sample(count: usize, max_results: usize) -> Vec<usize> {
    let max_results = max_results.max(1);
    let buckets = count.min(max_results);
    let (base, extra) = (count / max_results, count % max_results);
    let mut kept: Vec<usize> = (0..buckets).map(|b| b * base + b.min(extra)).collect();
    if let Some(last) = count.checked_sub(1) {
        if kept.last() != Some(&last) {
            if kept.len() >= max_results {
                *kept
                    .last_mut()
                    .expect("a bucket per point up to the budget") = last;
            } else {
                kept.push(last);
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> Series {
        let mut s = Series::default();
        for (i, &v) in values.iter().enumerate() {
            s.push(Number::Int(1000 + i as i64), Number::Int(i as i64), v);
        }
        s
    }

    #[test]
    fn a_short_series_is_kept_whole() {
        assert_eq!(sample(&series(&[1.0, 2.0, 3.0]), 320), vec![0, 1, 2]);
    }

    #[test]
    fn the_sample_keeps_extremes_ends_and_stays_within_budget() {
        let values: Vec<f64> = (0..1_000_000)
            .map(|i| ((i as f64) / 1000.0).sin() * (i as f64))
            .collect();
        let mut values = values;
        values[123_457] = 9e12;
        values[777_777] = -9e12;
        let s = series(&values);
        for budget in [320, 2000] {
            let kept = sample(&s, budget);
            assert!(kept.len() <= budget);
            assert!(kept.windows(2).all(|w| w[0] < w[1]));
            assert!(kept.contains(&0) && kept.contains(&(values.len() - 1)));
            assert!(kept.contains(&123_457) && kept.contains(&777_777));
        }
    }

    #[test]
    fn nan_and_infinities_are_kept() {
        let mut values = vec![1.0; 10_000];
        values[10] = f64::NAN;
        values[5000] = f64::INFINITY;
        values[7000] = f64::NEG_INFINITY;
        let kept = sample(&series(&values), 100);
        assert!(kept.len() <= 100);
        for index in [10, 5000, 7000] {
            assert!(kept.contains(&index), "{index} missing");
        }
    }

    #[test]
    fn points_are_ordered_by_step_then_timestamp() {
        let mut s = Series::default();
        s.push(Number::Int(5), Number::Int(2), 1.0);
        s.push(Number::Int(1), Number::Int(3), 2.0);
        s.push(Number::Int(3), Number::Int(1), 3.0);
        assert_eq!(s.by_step().values, vec![3.0, 1.0, 2.0]);
    }

    #[test]
    fn step_ranges_select_inclusively() {
        let s = series(&[0.0; 10]);
        assert_eq!(within_steps(&s, Some(3), Some(5)), vec![3, 4, 5]);
        assert_eq!(within_steps(&s, None, Some(1)), vec![0, 1]);
        assert_eq!(within_steps(&s, Some(8), None), vec![8, 9]);
    }

    #[test]
    fn interval_samples_follow_ntile_and_keep_the_last_point() {
        assert_eq!(mlflow_interval_sample(0, 320), Vec::<usize>::new());
        assert_eq!(mlflow_interval_sample(3, 320), vec![0, 1, 2]);
        // 10 points in 4 buckets: 3, 3, 2, 2; the last bucket starts at 8, so 9 replaces it.
        assert_eq!(mlflow_interval_sample(10, 4), vec![0, 3, 6, 9]);
        // 5 points in 4 buckets: the last bucket is the last point alone.
        assert_eq!(mlflow_interval_sample(5, 4), vec![0, 2, 3, 4]);
        assert_eq!(mlflow_interval_sample(7, 1), vec![6]);
        assert_eq!(mlflow_interval_sample(1, 1), vec![0]);
    }

    #[test]
    fn stored_key_order_puts_nan_after_a_zero_and_ranges_are_inclusive() {
        let mut s = Series::default();
        s.push(Number::Int(1), Number::Int(2), f64::NAN);
        s.push(Number::Int(1), Number::Int(2), 0.0);
        s.push(Number::Int(1), Number::Int(2), -1.0);
        s.push(Number::Int(0), Number::Real(2.5), 3.0);
        let s = by_stored_key(s.by_step());
        assert_eq!(s.values[..2], [-1.0, 0.0]);
        assert!(s.values[2].is_nan());
        assert_eq!(step_range(&s, 2, 2), 0..3);
        assert_eq!(step_range(&s, 3, 9), 4..4);
        assert_eq!(step_range(&s, 2, 3), 0..4);
        assert_eq!(at_steps(&s, &[9, 2]), vec![0, 1, 2]);
    }
}
