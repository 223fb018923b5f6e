//! Choosing the next fault at random (from the run's seeded RNG).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::cluster::proxy::LinkMode;
use crate::cluster::Cluster;

use super::fault::Fault;
use super::NemesisKind;

/// Bounds of the random choices.
#[derive(Clone, Copy, Debug)]
pub struct PlanLimits {
    /// Largest clock skew, either way, in ms.
    pub max_skew_ms: i64,
    /// Largest one-way link delay, in ms.
    pub max_delay_ms: u64,
}

/// Picks nodes: one at random, the leader of a random data group, a minority, a majority, or
/// (when `allow_all`) every node.
async fn targets(rng: &mut StdRng, c: &Cluster, allow_all: bool) -> (Vec<u64>, String) {
    let mut ids = c.ids();
    let n = ids.len();
    ids.shuffle(rng);
    let roll = rng.gen_range(0..100);
    match roll {
        0..30 => (ids[..1].to_vec(), "one".into()),
        30..60 => {
            let groups = c.data_groups();
            let g = groups[rng.gen_range(0..groups.len())];
            match c.leaders().await.get(&g) {
                Some(l) => (vec![*l], format!("leader-of-g{g}")),
                None => (ids[..1].to_vec(), "one".into()),
            }
        }
        60..80 => (ids[..((n - 1) / 2).max(1)].to_vec(), "minority".into()),
        80..92 => (ids[..n / 2 + 1].to_vec(), "majority".into()),
        _ if allow_all => (ids, "all".into()),
        _ => (ids[..n / 2 + 1].to_vec(), "majority".into()),
    }
}

fn cut_between(a: &[u64], b: &[u64]) -> Vec<(u64, u64)> {
    a.iter().flat_map(|x| b.iter().flat_map(move |y| [(*x, *y), (*y, *x)])).collect()
}

/// A random fault of `kind`.
pub async fn plan(kind: NemesisKind, rng: &mut StdRng, c: &Cluster, limits: PlanLimits) -> Fault {
    match kind {
        NemesisKind::Kill => {
            let (mut nodes, how) = targets(rng, c, true).await;
            nodes.sort_unstable();
            Fault::Kill { nodes, how }
        }
        NemesisKind::Pause => {
            let (mut nodes, how) = targets(rng, c, false).await;
            nodes.sort_unstable();
            Fault::Pause { nodes, how }
        }
        NemesisKind::Partition => {
            let mut ids = c.ids();
            ids.shuffle(rng);
            let n = ids.len();
            let mode = if rng.gen_bool(0.5) { LinkMode::Drop } else { LinkMode::Blackhole };
            let shape = rng.gen_range(0..100);
            let (shape, sides, cut) = match shape {
                0..30 => {
                    let groups = c.data_groups();
                    let g = groups[rng.gen_range(0..groups.len())];
                    let leader = c.leaders().await.get(&g).copied().unwrap_or(ids[0]);
                    let rest: Vec<u64> = ids.iter().copied().filter(|x| *x != leader).collect();
                    (
                        "isolate-leader".to_owned(),
                        format!("{:?} | {rest:?} (leader of g{g})", [leader]),
                        cut_between(&[leader], &rest),
                    )
                }
                30..55 => {
                    let (a, b) = ids.split_at(n / 2);
                    ("halves".to_owned(), format!("{a:?} | {b:?}"), cut_between(a, b))
                }
                55..75 if n >= 5 => {
                    // Each node keeps its two ring neighbours: everyone sees a majority, no two
                    // the same one.
                    let mut cut = Vec::new();
                    for i in 0..n {
                        for j in 0..n {
                            let d = (i + n - j) % n;
                            if i != j && d != 1 && d != n - 1 {
                                cut.push((ids[i], ids[j]));
                            }
                        }
                    }
                    ("majority-ring".to_owned(), format!("ring {ids:?}"), cut)
                }
                55..80 => {
                    let k = (n - 1) / 2;
                    let (a, rest) = ids.split_at(k.max(1));
                    let (bridge, b) = rest.split_at(1);
                    ("bridge".to_owned(), format!("{a:?} | {b:?} bridged by {bridge:?}"), cut_between(a, b))
                }
                _ => {
                    let x = ids[0];
                    let outbound = rng.gen_bool(0.5);
                    let cut: Vec<(u64, u64)> =
                        ids[1..].iter().map(|y| if outbound { (x, *y) } else { (*y, x) }).collect();
                    let dir = if outbound { "cannot send" } else { "cannot receive" };
                    ("one-way".to_owned(), format!("node {x} {dir}"), cut)
                }
            };
            Fault::Partition { shape, sides, cut, mode }
        }
        NemesisKind::Delay => {
            let ms = rng.gen_range(20..=limits.max_delay_ms.max(20));
            let jitter_ms = rng.gen_range(0..=ms / 2);
            let (links, how) = if rng.gen_bool(0.3) {
                (c.net.links(), "all links".to_owned())
            } else {
                let (nodes, how) = targets(rng, c, false).await;
                let x = nodes[0];
                let links = c.net.links().into_iter().filter(|(a, b)| *a == x || *b == x).collect();
                (links, format!("links of node {x} ({how})"))
            };
            Fault::Delay { links, how, ms, jitter_ms }
        }
        NemesisKind::Clock => {
            let mut ids = c.ids();
            ids.shuffle(rng);
            let count = if rng.gen_bool(0.3) { 2 } else { 1 };
            let max = limits.max_skew_ms.max(100);
            let skews = ids
                .into_iter()
                .take(count)
                .map(|n| {
                    let magnitude = match rng.gen_range(0..3) {
                        0 => rng.gen_range(50..=1_000),
                        1 => rng.gen_range(1_000..=10_000.min(max)),
                        _ => rng.gen_range(1_000..=max),
                    };
                    (n, if rng.gen_bool(0.5) { magnitude } else { -magnitude })
                })
                .collect();
            Fault::Clock { skews }
        }
    }
}
