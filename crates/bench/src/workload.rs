//! What each simulated client does: which operation, on which key.

use clap::ValueEnum;
use rand::Rng;
use rand_distr::{Distribution, Zipf};
use serde::Serialize;

/// The operation mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mix {
    /// Only writes.
    Write,
    /// Only reads (the key space is loaded first).
    Read,
    /// 90% reads, 10% writes.
    Mixed,
}

/// How keys are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// Zipf with exponent 0.99 (a few hot keys).
    Zipf,
}

/// One operation.
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
    /// A generator over `keys` keys.
    pub fn new(mix: Mix, dist: KeyDist, keys: u64) -> Self {
        let zipf = (dist == KeyDist::Zipf).then(|| Zipf::new(keys, 0.99).expect("valid zipf parameters"));
        Self { mix, keys, zipf }
    }

    /// The next operation.
    pub fn next(&self, rng: &mut impl Rng) -> Op {
        let key = match &self.zipf {
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
