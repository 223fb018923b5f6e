use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

const BIN_NAME: &str = "raftcache";

/// The `raftcache` binary to run (see the crate docs for the search order).
pub fn raftcache_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("RAFTCACHE_BIN") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("RAFTCACHE_BIN={} is not a file", p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1) {
        // A test executable lives in target/<profile>/deps; the binary in target/<profile>.
        for candidate in [
            dir.join(BIN_NAME),
            dir.join("target").join("debug").join(BIN_NAME),
            dir.join("target").join("release").join(BIN_NAME),
        ] {
            if is_raftcache_binary(&candidate) {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "the raftcache binary was not found (looked next to {} and in target/{{debug,release}} of its \
         ancestors); run `cargo build -p raftcache-server --bin raftcache` or set RAFTCACHE_BIN",
        exe.display()
    )
}

fn is_raftcache_binary(p: &Path) -> bool {
    p.is_file() && p.file_name().is_some_and(|n| n == BIN_NAME)
}
