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

/// One node's process: spawn, SIGKILL, SIGSTOP/SIGCONT, noticing when it exits on its own, and
/// its log file. Public so that harnesses with their own cluster layout (the fault suite gives
/// each node its own `--peer-addr` list) share one implementation of the process handling.
///
/// The log file collects the process's stdout and stderr over all its starts. Every start, and
/// every [`mark`](Self::mark), writes a line `===== <marker>: ...` into it, so a log reads with
/// the harness's timeline; the marker is `testkit` unless [`with_log_marker`](Self::with_log_marker)
/// names another.
///
/// Dropping it SIGKILLs and reaps the process.
pub struct NodeProcess {
    id: u64,
    data_dir: PathBuf,
    log_path: PathBuf,
    marker: String,
    /// `RUST_LOG` given to the process when the caller's environment has none.
    default_rust_log: Option<String>,
    pub(crate) child: Option<Child>,
    /// Set by [`pause`](Self::pause), cleared by [`resume`](Self::resume), kill and spawn.
    pub(crate) paused: bool,
    /// How many times the process was spawned.
    starts: u32,
}

impl NodeProcess {
    /// A node with no process yet. Its data lives in `data_dir` (created at the first spawn), its
    /// output goes to `log_path` (appended to). Log marker `testkit`; `RUST_LOG=info` unless the
    /// environment sets it.
    pub fn new(id: u64, data_dir: PathBuf, log_path: PathBuf) -> Self {
        Self {
            id,
            data_dir,
            log_path,
            marker: "testkit".into(),
            default_rust_log: Some("info".into()),
            child: None,
            paused: false,
            starts: 0,
        }
    }

    /// The word that opens the marker lines in the log (`===== <marker>: ...`).
    pub fn with_log_marker(mut self, marker: &str) -> Self {
        self.marker = marker.into();
        self
    }

    /// The `RUST_LOG` the process gets when the caller's environment sets none; `None` leaves it
    /// unset, so the binary's own default applies.
    pub fn with_default_rust_log(mut self, filter: Option<&str>) -> Self {
        self.default_rust_log = filter.map(str::to_string);
        self
    }

    /// The node id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The node's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The node's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// How many times the process was spawned.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// The current process id, if there is a process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the harness last did to the node, without looking whether the process has since
    /// exited on its own (see [`reap_exit`](Self::reap_exit)): a process that crashed still
    /// counts as running until it is reaped.
    pub fn believed_state(&self) -> NodeState {
        match (&self.child, self.paused) {
            (None, _) => NodeState::Down,
            (Some(_), true) => NodeState::Paused,
            (Some(_), false) => NodeState::Running,
        }
    }

    /// Like [`believed_state`](Self::believed_state), but a process that has exited is `Down`
    /// (it is not reaped: [`exited`](Self::exited) still reports it).
    pub fn state(&mut self) -> NodeState {
        if self.exited().is_some() {
            return NodeState::Down;
        }
        self.believed_state()
    }

    /// The exit status if the process ended on its own (or by someone else's signal).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Like [`exited`](Self::exited), but forgets the process, so the node counts as down.
    pub fn reap_exit(&mut self) -> Option<ExitStatus> {
        let status = self.exited()?;
        self.child = None;
        self.paused = false;
        Some(status)
    }

    /// Spawns `bin args`, output appended to the log after a start marker line that names the
    /// start's number and `note` (e.g. `(restart)`). Fails if a process is still running.
    pub fn spawn(&mut self, bin: &Path, args: &[String], note: Option<&str>) -> Result<()> {
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
        let note = note.map(|n| format!(" {n}")).unwrap_or_default();
        writeln!(
            log,
            "===== {}: start #{} of node {}{note}: {} {}",
            self.marker,
            self.starts,
            self.id,
            bin.display(),
            args.join(" ")
        )?;
        let stderr: File = log.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.args(args).stdin(Stdio::null()).stdout(log).stderr(stderr);
        if let Some(filter) = &self.default_rust_log {
            if std::env::var_os("RUST_LOG").is_none() {
                cmd.env("RUST_LOG", filter);
            }
        }
        let child = cmd.spawn().with_context(|| format!("spawning {}", bin.display()))?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// Appends a marker line `===== <marker>: <line>` to the log (best effort).
    pub fn mark(&self, line: &str) {
        if let Ok(mut f) = OpenOptions::new().append(true).open(&self.log_path) {
            let _ = writeln!(f, "===== {}: {line}", self.marker);
        }
    }

    /// Sends `kill -<sig>` to the process.
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

    /// SIGSTOP: the process stays up but stops answering, like a long GC pause.
    pub fn pause(&mut self) -> Result<()> {
        self.signal("STOP")?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT.
    pub fn resume(&mut self) -> Result<()> {
        self.signal("CONT")?;
        self.paused = false;
        Ok(())
    }

    /// SIGKILL and reap; false if there was no process.
    pub fn kill(&mut self) -> bool {
        let had = match self.child.take() {
            Some(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
                true
            }
            None => false,
        };
        self.paused = false;
        had
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

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One node of a [`Cluster`](crate::Cluster): its address, its own `serve` flags, its process.
pub(crate) struct Node {
    pub addr: String,
    /// `serve` flags for this node alone.
    pub extra_args: Vec<String>,
    pub proc: NodeProcess,
}

impl Node {
    pub fn new(id: u64, addr: String, dir: &Path) -> Self {
        let home = dir.join(format!("n{id}"));
        Self { addr, extra_args: Vec::new(), proc: NodeProcess::new(id, home.join("data"), home.join("node.log")) }
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
