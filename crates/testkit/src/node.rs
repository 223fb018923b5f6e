use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What the kit believes a node process is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Started and not stopped, killed or paused by the kit (it may still have crashed; see
    /// [`Cluster::check_alive`](crate::Cluster::check_alive)).
    Running,
    /// Stopped with SIGSTOP.
    Paused,
    /// Not running: never started, killed, stopped, or exited.
    Down,
}

/// One node: its fixed identity (id, port, dirs) and its current process, if any.
pub(crate) struct Node {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub child: Option<Child>,
    pub paused: bool,
    /// How many times the process was spawned; the log marks each start.
    pub starts: u32,
    /// `serve` flags for this node alone.
    pub extra_args: Vec<String>,
}

impl Node {
    pub fn new(id: u64, addr: String, dir: &Path) -> Self {
        Self {
            id,
            addr,
            data_dir: dir.join(format!("n{id}")).join("data"),
            log_path: dir.join(format!("n{id}")).join("node.log"),
            child: None,
            paused: false,
            starts: 0,
            extra_args: Vec::new(),
        }
    }

    pub fn state(&mut self) -> NodeState {
        match &mut self.child {
            None => NodeState::Down,
            Some(c) => match c.try_wait() {
                Ok(Some(_)) => NodeState::Down,
                _ if self.paused => NodeState::Paused,
                _ => NodeState::Running,
            },
        }
    }

    /// The exit status if the process ended on its own (or by someone else's signal).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn spawn(&mut self, bin: &Path, args: &[String]) -> Result<()> {
        if self.child.is_some() && self.exited().is_none() {
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
            "===== testkit: start #{} of node {}: {} {}",
            self.starts,
            self.id,
            bin.display(),
            args.join(" ")
        )?;
        let stderr: File = log.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.args(args).stdin(Stdio::null()).stdout(log).stderr(stderr);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd.spawn().with_context(|| format!("spawning {}", bin.display()))?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.pid().with_context(|| format!("node {} has no process", self.id))?;
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .status()
            .context("running the kill command")?;
        if !status.success() {
            bail!("kill -{sig} {pid} (node {}) failed: {status}", self.id);
        }
        Ok(())
    }

    /// SIGKILL and reap. A no-op when there is no process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = match std::fs::read(&self.log_path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => return format!("(no log at {}: {e})", self.log_path.display()),
        };
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGTERMs `child` (continuing it first if it is paused), then waits up to `grace` for it to
/// exit; SIGKILLs it after that and reports the kill as an error.
pub(crate) async fn stop_child(id: u64, mut child: Child, paused: bool, grace: Duration) -> Result<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Ok(status);
    }
    let pid = child.id().to_string();
    if paused {
        // A stopped process does not act on SIGTERM until it is continued.
        let _ = Command::new("kill").args(["-CONT", &pid]).status();
    }
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + grace;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("node {id} did not exit within {grace:?} of SIGTERM; killed it");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
