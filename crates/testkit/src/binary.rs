use std::path::PathBuf;

use anyhow::{bail, Result};

const BIN_NAME: &str = "raftcache";

/// The `raftcache` binary to run (see the crate docs for the search order).
pub fn raftcache_bin() -> Result<PathBuf> {
    match find_bin(BIN_NAME, "RAFTCACHE_BIN")? {
        Some(p) => Ok(p),
        None => bail!(
            "the raftcache binary was not found (looked next to {} and in target/{{debug,release}} of its \
             ancestors); run `cargo build -p raftcache-server --bin raftcache` or set RAFTCACHE_BIN",
            std::env::current_exe()?.display()
        ),
    }
}

/// The executable `name` of this workspace: the path in the environment variable `env_var` if it
/// is set (an error if that is not a file); else the first `name` next to the running executable
/// or in `target/debug`, then `target/release`, of one of its ancestor directories (a test
/// executable lives in `target/<profile>/deps`, the binaries in `target/<profile>`). `None` when
/// there is none.
pub fn find_bin(name: &str, env_var: &str) -> Result<Option<PathBuf>> {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("{env_var}={} is not a file", p.display());
        }
        return Ok(Some(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1) {
        for candidate in [dir.join(name), dir.join("target/debug").join(name), dir.join("target/release").join(name)] {
            if candidate.is_file() {
                return Ok(Some(candidate));
            }
        }
    }
    Ok(None)
}
