//! A small, fast, seedable random number generator (SplitMix64), so that the same seed
//! gives the same events on every machine; and the same generator counter-based
//! (`draw`): the n-th number of a stream without the ones before, for models whose
//! events are each a function of their number.

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function.
fn finish(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `n`-th number of the stream `stream` (what the `n + 1`-th `next_u64` of
/// `Rng::new` would give, for a seed that makes `stream` its state).
pub fn draw(stream: u64, n: u64) -> u64 {
    finish(stream.wrapping_add(n.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// Uniform in [0, 1) from 53 of a number's bits.
pub fn unit_of(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Approximately standard normal from one number: its four 16-bit quarters as four
/// uniforms, summed and scaled (as `Rng::normal`, at a quarter of the draws).
pub fn normal_of(bits: u64) -> f64 {
    let sum = (bits & 0xffff) + ((bits >> 16) & 0xffff) + ((bits >> 32) & 0xffff) + (bits >> 48);
    (sum as f64 / 65_536.0 - 2.0) * 1.732
}

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        finish(self.0)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); 0 when n is 0 (a multiply, not a division).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Approximately standard normal (sum of four uniforms, scaled).
    pub fn normal(&mut self) -> f64 {
        (self.unit() + self.unit() + self.unit() + self.unit() - 2.0) * 1.732
    }

    /// Exponential with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// A stable hash for deriving per-key properties from a seed.
pub fn mix(a: u64, b: u64) -> u64 {
    Rng::new(a.wrapping_mul(31).wrapping_add(b)).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draw_is_the_stream_at_that_number() {
        let mut r = Rng::new(7);
        let stream = 7 ^ GAMMA;
        for n in 0..100 {
            assert_eq!(draw(stream, n), r.next_u64());
        }
    }

    #[test]
    fn normals_from_one_draw_have_mean_0_and_variance_near_1() {
        let xs: Vec<f64> = (0..200_000).map(|n| normal_of(draw(1, n))).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }

    #[test]
    fn below_stays_below() {
        let mut r = Rng::new(3);
        assert!((0..10_000).all(|_| r.below(7) < 7));
        assert_eq!(r.below(0), 0);
    }
}
