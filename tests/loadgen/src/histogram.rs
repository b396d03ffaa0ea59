//! A log-linear latency histogram in the spirit of HdrHistogram, small enough to own.
//!
//! Values (nanoseconds) below 128 have their own bucket; above, each power of two is split into
//! 128 linear buckets, so a recorded value is known to within 1/128 (< 0.8%). Memory is fixed
//! (64 x 128 counters) however long the run, which a `Vec` of every sample would not be.

const SUB_BUCKET_BITS: u32 = 7;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
const N_BUCKETS: usize = (64 - SUB_BUCKET_BITS as usize + 1) * SUB_BUCKETS;

pub struct Histogram {
    counts: Vec<u64>,
    n_values: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; N_BUCKETS],
            n_values: 0,
            max: 0,
        }
    }

    pub fn record(&mut self, value: u64) {
        self.counts[bucket_idx(value)] += 1;
        self.n_values += 1;
        self.max = self.max.max(value);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (count, other_count) in self.counts.iter_mut().zip(&other.counts) {
            *count += other_count;
        }
        self.n_values += other.n_values;
        self.max = self.max.max(other.max);
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value below or at which `quantile` (0.0..=1.0) of the recorded values lie: the middle
    /// of the bucket holding that rank, never above the exact maximum. 0 when empty.
    pub fn value_at_quantile(&self, quantile: f64) -> u64 {
        if self.n_values == 0 {
            return 0;
        }
        let rank = ((quantile * self.n_values as f64).ceil() as u64).clamp(1, self.n_values);
        let mut seen = 0;
        for (bucket_idx, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, width) = bucket_range(bucket_idx);
                return (low + width / 2).min(self.max);
            }
        }
        self.max
    }
}

fn bucket_idx(value: u64) -> usize {
    if value < SUB_BUCKETS as u64 {
        return value as usize;
    }
    let top_bit = 63 - value.leading_zeros();
    let shift = top_bit - SUB_BUCKET_BITS;
    let sub_bucket = (value >> shift) as usize - SUB_BUCKETS;
    (shift as usize + 1) * SUB_BUCKETS + sub_bucket
}

/// Lowest value of the bucket and its width.
fn bucket_range(bucket_idx: usize) -> (u64, u64) {
    if bucket_idx < SUB_BUCKETS {
        return (bucket_idx as u64, 1);
    }
    let shift = (bucket_idx / SUB_BUCKETS - 1) as u32;
    let sub_bucket = (bucket_idx % SUB_BUCKETS) as u64;
    ((SUB_BUCKETS as u64 + sub_bucket) << shift, 1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_the_bucket_whose_range_contains_it() {
        for value in [
            0,
            1,
            127,
            128,
            255,
            256,
            257,
            1_000,
            123_456,
            9_876_543_210,
            u64::MAX,
        ] {
            let (low, width) = bucket_range(bucket_idx(value));
            assert!(
                low <= value && value - low < width,
                "{value}: [{low}, +{width})"
            );
            assert!(
                width == 1 || (width as f64) / (low as f64) <= 1.0 / 128.0,
                "{value}"
            );
        }
    }

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut histogram = Histogram::new();
        for micros in 1..=1000u64 {
            histogram.record(micros * 1_000);
        }
        for (quantile, expected) in [(0.5, 500_000.0), (0.9, 900_000.0), (0.99, 990_000.0)] {
            let got = histogram.value_at_quantile(quantile) as f64;
            assert!(
                (got - expected).abs() / expected < 0.01,
                "p{quantile}: {got}"
            );
        }
        assert_eq!(histogram.value_at_quantile(1.0), 1_000_000);
        assert_eq!(Histogram::new().value_at_quantile(0.5), 0);
    }
}
