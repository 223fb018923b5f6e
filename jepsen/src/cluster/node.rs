//! One node process: spawn, SIGKILL, SIGSTOP/SIGCONT, and noticing when it dies on its own.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::{bail, Context, Result};

/// What the harness believes a node is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Running (as far as the harness knows).
    Running,
    /// Stopped with SIGSTOP.
    Paused,
    /// No process: never started, killed, or exited.
    Down,
}

pub(crate) struct NodeProc {
    pub id: u64,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub args: Vec<String>,
    pub child: Option<Child>,
    pub paused: bool,
    pub starts: u32,
}

impl NodeProc {
    pub fn state(&self) -> NodeState {
        match (&self.child, self.paused) {
            (None, _) => NodeState::Down,
            (Some(_), true) => NodeState::Paused,
            (Some(_), false) => NodeState::Running,
        }
    }

    pub fn spawn(&mut self, bin: &Path, note: &str) -> Result<()> {
        if self.child.is_some() {
            bail!("node {} is already running", self.id);
        }
        std::fs::create_dir_all(&self.data_dir)?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        self.starts += 1;
        writeln!(
            log,
            "===== jepsen: start #{} of node {} {note}: {} {}",
            self.starts,
            self.id,
            bin.display(),
            self.args.join(" ")
        )?;
        let stderr = log.try_clone()?;
        let child = Command::new(bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// Appends a marker line to the node's log (faults, so the log reads with the timeline).
    pub fn mark(&self, line: &str) {
        if let Ok(mut f) = OpenOptions::new().append(true).open(&self.log_path) {
            let _ = writeln!(f, "===== jepsen: {line}");
        }
    }

    /// SIGKILL and reap; false if there was no process.
    pub fn kill(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return false };
        let _ = c.kill();
        let _ = c.wait();
        self.paused = false;
        true
    }

    pub fn signal(&mut self, sig: &str) -> Result<()> {
        let pid = self.child.as_ref().map(Child::id).with_context(|| format!("node {} has no process", self.id))?;
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{sig} {pid} (node {}) failed: {status}", self.id);
        }
        self.paused = sig == "STOP";
        Ok(())
    }

    /// The exit status if the process ended without the harness killing it (it is then
    /// forgotten, so the node counts as down).
    pub fn reap_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        self.paused = false;
        Some(status)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(&self.log_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}
