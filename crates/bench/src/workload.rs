//! What each simulated client does: which operation, on which key.

use clap::ValueEnum;
use rand::Rng;
use rand_distr::{Distribution, Zipf};
use serde::Serialize;

/// Zipf exponent of the skewed key distribution.
pub const ZIPF_EXPONENT: f64 = 0.99;

/// The operation mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mix {
    /// Only writes.
    Write,
    /// Only reads (the key space is loaded first).
    Read,
    /// 90% reads, 10% writes.
    Mixed,
}

impl Mix {
    /// The name records use.
    pub fn name(self) -> &'static str {
        match self {
            Mix::Write => "write",
            Mix::Read => "read",
            Mix::Mixed => "mixed",
        }
    }

    /// Whether the workload reads (and so needs the key space loaded, and has a read level).
    pub fn reads(self) -> bool {
        self != Mix::Write
    }
}

/// How keys are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// Zipf with exponent [`ZIPF_EXPONENT`] (a few hot keys).
    Zipf,
}

impl KeyDist {
    /// The name records use.
    pub fn name(self) -> &'static str {
        match self {
            KeyDist::Uniform => "uniform",
            KeyDist::Zipf => "zipf",
        }
    }
}

/// One operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read key index.
    Read(u64),
    /// Write key index.
    Write(u64),
}

/// Draws operations.
pub struct Generator {
    mix: Mix,
    keys: u64,
    zipf: Option<Zipf<f64>>,
}

impl Generator {
    /// A generator over `keys` keys, `keys >= 1`.
    pub fn new(mix: Mix, dist: KeyDist, keys: u64) -> anyhow::Result<Self> {
        anyhow::ensure!(keys >= 1, "the key space needs at least one key");
        let zipf = match dist {
            KeyDist::Zipf => Some(Zipf::new(keys, ZIPF_EXPONENT).map_err(|e| anyhow::anyhow!("zipf: {e}"))?),
            KeyDist::Uniform => None,
        };
        Ok(Self { mix, keys, zipf })
    }

    /// The next operation; its key index is in `0..keys`, 0 the hottest under Zipf.
    pub fn next(&self, rng: &mut impl Rng) -> Op {
        let key = match &self.zipf {
            // Zipf draws ranks 1..=keys.
            Some(z) => (z.sample(rng) as u64).saturating_sub(1).min(self.keys - 1),
            None => rng.gen_range(0..self.keys),
        };
        let write = match self.mix {
            Mix::Write => true,
            Mix::Read => false,
            Mix::Mixed => rng.gen_ratio(1, 10),
        };
        if write {
            Op::Write(key)
        } else {
            Op::Read(key)
        }
    }
}

/// The key name of index `i`.
pub fn key_name(i: u64) -> String {
    format!("key:{i:08}")
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn draw(mix: Mix, dist: KeyDist, keys: u64, n: usize) -> Vec<Op> {
        let g = Generator::new(mix, dist, keys).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        (0..n).map(|_| g.next(&mut rng)).collect()
    }

    fn key(op: &Op) -> u64 {
        match *op {
            Op::Read(k) | Op::Write(k) => k,
        }
    }

    #[test]
    fn mixes_have_their_share_of_writes() {
        let writes = |ops: &[Op]| ops.iter().filter(|o| matches!(o, Op::Write(_))).count();
        assert_eq!(writes(&draw(Mix::Write, KeyDist::Uniform, 100, 1000)), 1000);
        assert_eq!(writes(&draw(Mix::Read, KeyDist::Uniform, 100, 1000)), 0);
        let w = writes(&draw(Mix::Mixed, KeyDist::Uniform, 100, 20_000));
        assert!((1700..2300).contains(&w), "{w} writes of 20000");
    }

    #[test]
    fn keys_stay_in_range_and_zipf_is_skewed() {
        let n = 50_000;
        for dist in [KeyDist::Uniform, KeyDist::Zipf] {
            assert!(draw(Mix::Read, dist, 10_000, n).iter().all(|o| key(o) < 10_000));
        }
        let hot = |dist| draw(Mix::Read, dist, 10_000, n).iter().filter(|o| key(o) < 10).count();
        let (uniform, zipf) = (hot(KeyDist::Uniform), hot(KeyDist::Zipf));
        // Under Zipf(0.99) over 10k keys the 10 hottest take about 30% of draws; uniform 0.1%.
        assert!(uniform < n / 200, "uniform: {uniform} of {n} on the first 10 keys");
        assert!(zipf > n / 5, "zipf: {zipf} of {n} on the 10 hottest keys");
        assert!(draw(Mix::Read, KeyDist::Zipf, 1, 100).iter().all(|o| key(o) == 0));
    }

    #[test]
    fn an_empty_key_space_is_refused() {
        let e = Generator::new(Mix::Read, KeyDist::Uniform, 0).err().unwrap().to_string();
        assert!(e.contains("at least one key"), "{e}");
    }
}
