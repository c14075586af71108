//! Random draws for the per-record walk: the generator's random stream and
//! the table that picks among weighted choices.
//!
//! Both are written by hand because a live record of a rich schema takes
//! dozens of draws, so each nanosecond per draw shows in records per second:
//! `SmallRng` (xoshiro256++) plus `rand`'s range sampling cost several times
//! what wyrand's one multiply and a multiply-shift do, and
//! `WeightedIndex` / `WeightedAliasIndex` take two draws and a float
//! comparison (or a binary search) where an alias table with integer
//! thresholds takes one draw.

use rand::{RngCore, SeedableRng};

/// wyrand (Wang Yi): a 64-bit state stepped by a constant, mixed by one
/// 64x64->128-bit multiply. Not cryptographic; it passes BigCrush and
/// PractRand, which is plenty for synthetic data. Implements `RngCore` so
/// `rand_distr` distributions can draw from it.
#[derive(Clone, Debug)]
pub struct Wy(u64);

impl Wy {
    #[inline]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        (t >> 64) as u64 ^ t as u64
    }

    /// Uniform in `0..n` (`n > 0`) by multiply-shift; the bias, at most
    /// `n / 2^64`, is far below anything a run can observe.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        mul_hi(self.next(), n)
    }

    /// Uniform in `min..=max`.
    #[inline]
    pub fn range_i64(&mut self, min: i64, max: i64) -> i64 {
        let span = (max as u64).wrapping_sub(min as u64).wrapping_add(1);
        if span == 0 {
            // The whole of i64.
            return self.next() as i64;
        }
        (min as u64).wrapping_add(self.below(span)) as i64
    }

    /// Uniform in `[0, 1)`, 53 random bits.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with the probability `c` was made from.
    #[inline]
    pub fn chance(&mut self, c: Chance) -> bool {
        self.next() < c.0
    }
}

/// `(a * n) >> 64`: `a` scaled from `0..2^64` to `0..n`.
#[inline]
fn mul_hi(a: u64, n: u64) -> u64 {
    ((u128::from(a) * u128::from(n)) >> 64) as u64
}

impl RngCore for Wy {
    #[inline]
    fn next_u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.next()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let b = self.next().to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

impl SeedableRng for Wy {
    type Seed = [u8; 8];
    fn from_seed(seed: [u8; 8]) -> Wy {
        Wy(u64::from_le_bytes(seed))
    }
    fn seed_from_u64(seed: u64) -> Wy {
        Wy(seed)
    }
}

/// A probability as a threshold on a 64-bit draw (1.0 is `u64::MAX`, so
/// "always" misses once in 2^64 draws).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Chance(u64);

impl Chance {
    pub fn new(p: f64) -> Chance {
        // The cast saturates: p >= 1 gives u64::MAX, p <= 0 (or NaN) 0.
        Chance((p * 18_446_744_073_709_551_616.0) as u64)
    }
}

/// Walker's alias table (built by Vose's method) over `n` weighted
/// choices, with integer thresholds: one 64-bit draw gives both the bucket
/// (its high part times `n`) and the position inside it (the low part).
/// Each bucket is one word, threshold and alias together, so a draw reads
/// one cache line.
#[derive(Clone, Debug)]
pub struct Alias {
    /// Bucket `i`: a 32-bit threshold above the alias. A position (its top
    /// 32 bits) below the threshold picks `i`, others the alias.
    buckets: Box<[u64]>,
}

impl Alias {
    /// `None` unless the weights are finite, non-negative, not all zero and
    /// fewer than 2^32.
    pub fn new(weights: &[f64]) -> Option<Alias> {
        let n = weights.len();
        let sum: f64 = weights.iter().sum();
        if n == 0
            || n > u32::MAX as usize
            || !(sum > 0.0 && sum.is_finite())
            || weights.iter().any(|w| w.is_nan() || *w < 0.0)
        {
            return None;
        }
        // Thresholds in 32 bits; a full bucket has u32::MAX and itself as
        // alias, so the 2^-32 left over picks the same choice.
        let to_threshold = |p: f64| (p * 4_294_967_296.0) as u32;
        let mut p: Vec<f64> = weights.iter().map(|w| w * n as f64 / sum).collect();
        let mut threshold = vec![u32::MAX; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| p[i] < 1.0);
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            threshold[s] = to_threshold(p[s]);
            alias[s] = l as u32;
            p[l] -= 1.0 - p[s];
            if p[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // What is left holds (up to rounding) a full bucket; a zero weight
        // left over by rounding must still never be picked.
        let heaviest = (0..n).max_by(|&a, &b| weights[a].total_cmp(&weights[b]))?;
        for i in small.into_iter().chain(large) {
            if weights[i] == 0.0 {
                threshold[i] = 0;
                alias[i] = heaviest as u32;
            } else {
                threshold[i] = u32::MAX;
            }
        }
        let buckets = threshold
            .iter()
            .zip(&alias)
            .map(|(t, a)| (u64::from(*t) << 32) | u64::from(*a))
            .collect();
        Some(Alias { buckets })
    }

    /// The choice that the draw `r` picks.
    #[inline]
    pub fn sample(&self, r: u64) -> usize {
        let m = u128::from(r) * self.buckets.len() as u128;
        let (i, within) = ((m >> 64) as usize, (m as u64 >> 32) as u32);
        let b = self.buckets[i];
        // A conditional move, not a branch that mispredicts on every other
        // draw.
        if within < (b >> 32) as u32 {
            i
        } else {
            b as u32 as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_tables_follow_their_weights() {
        let w = [30.0, 25.0, 20.0, 18.0, 5.0, 2.0, 0.0];
        let t = Alias::new(&w).unwrap();
        let mut rng = Wy::seed_from_u64(1);
        let mut counts = [0u32; 7];
        let n = 1_000_000;
        for _ in 0..n {
            counts[t.sample(rng.next())] += 1;
        }
        for (c, w) in counts.iter().zip(w) {
            let want = f64::from(n) * w / 100.0;
            assert!(
                (f64::from(*c) - want).abs() < 5.0 * want.sqrt() + 1.0,
                "{counts:?}"
            );
        }
        assert_eq!(counts[6], 0);
        // Only zero weights but one.
        let t = Alias::new(&[0.0, 1.0, 0.0]).unwrap();
        assert!((0..1000).all(|_| t.sample(rng.next()) == 1));
        assert!(Alias::new(&[0.0, 0.0]).is_none());
        assert!(Alias::new(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn ranges_and_chances() {
        let mut rng = Wy::seed_from_u64(2);
        assert!((0..1000).all(|_| (-3..=3).contains(&rng.range_i64(-3, 3))));
        assert!((0..1000).all(|_| rng.range_i64(5, 5) == 5));
        let _ = rng.range_i64(i64::MIN, i64::MAX);
        assert!((0..1000).all(|_| rng.chance(Chance::new(1.0))));
        assert!((0..1000).all(|_| !rng.chance(Chance::new(0.0))));
        let hits = (0..100_000)
            .filter(|_| rng.chance(Chance::new(0.3)))
            .count();
        assert!((29_000..31_000).contains(&hits), "{hits}");
        assert!((0..1000).all(|_| (0.0..1.0).contains(&rng.unit())));
    }
}
