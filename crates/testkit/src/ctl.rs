use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};

/// What one `raftcache ctl …` run printed and returned.
#[derive(Clone, Debug)]
pub struct CtlOutput {
    /// Exit code (`-1` if it died of a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CtlOutput {
    /// Standard output without the trailing newline.
    pub fn out(&self) -> &str {
        self.stdout.trim_end()
    }

    /// Whether stdout or stderr mentions `word` (case-insensitive).
    pub fn says(&self, word: &str) -> bool {
        let word = word.to_lowercase();
        self.stdout.to_lowercase().contains(&word) || self.stderr.to_lowercase().contains(&word)
    }

    /// Standard output parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(self.out()).with_context(|| format!("ctl output is not JSON: {self}"))
    }
}

impl std::fmt::Display for CtlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}; stdout {:?}; stderr {:?}", self.code, self.stdout, self.stderr)
    }
}

/// Runs `bin args…` and collects its output; kills it after `timeout`.
pub(crate) async fn run(bin: &Path, args: &[String], timeout: Duration) -> Result<CtlOutput> {
    let child = tokio::process::Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .with_context(|| format!("`raftcache {}` did not finish within {timeout:?}", args.join(" ")))??;
    Ok(CtlOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
