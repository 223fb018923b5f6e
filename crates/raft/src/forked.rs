//! Encoding a snapshot in a forked child process, the way Redis writes its RDB files.
//!
//! Encoding a group's whole state takes time linear in its size (about 100 ms at 40 MB on the
//! benchmark machine). Done in the node's own process, it needs a consistent view of the state
//! for that whole time, which means holding the state machine's lock, which stops apply and
//! freezes the group. `fork` gives the child a copy-on-write image of the process at one instant:
//! the caller holds the lock only across the `fork` call (it copies page tables, not pages), and
//! the child encodes at leisure and streams the bytes back through a pipe while the parent goes
//! on applying. A page the parent writes meanwhile is copied once by the kernel, so the extra
//! memory is at most the pages written during the encode.
//!
//! ## SAFETY IN THE CHILD
//!
//! The child is a copy of a multi-threaded process with one thread: any lock another thread held
//! at the fork stays held there forever. So the child only runs the caller's closure (which
//! encodes memory into a writer and allocates — glibc's `fork` hands the child usable allocator
//! locks), writes to the pipe with plain `write` calls, and leaves with `_exit`, running no
//! destructors, atexit handlers or flushes of the parent's buffers. It never logs: the tracing
//! subscriber and stderr have locks. It dies with the thread that forked it
//! (`PR_SET_PDEATHSIG`), so a killed node leaves no encoder behind, and it runs at the lowest
//! CPU priority, so that on a busy machine it takes what the node leaves.
//!
//! One child runs at a time in a process: a second child would inherit the first one's pipe and
//! hold it open, and two encodes at once would only compete for the same cores.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::FromRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

/// Held from a child's fork until it is reaped.
static ONE_CHILD: Mutex<()> = Mutex::new(());

/// Exit status of a child whose closure returned an error.
const FAILED: i32 = 1;
/// Exit status of a child whose closure panicked.
const PANICKED: i32 = 2;
/// Exit status of a child whose parent thread was already gone.
const ORPHANED: i32 = 3;

/// A forked child writing into a pipe; [`Child::finish`] collects what it wrote.
pub struct Child {
    pid: libc::pid_t,
    read: File,
    reaped: bool,
    _one: MutexGuard<'static, ()>,
}

/// The right to fork the process's one child: [`reserve`] it before taking the locks that the
/// child's closure needs, since waiting for another child's encode under them would stall their
/// other users for that whole encode.
pub struct Turn(MutexGuard<'static, ()>);

/// Waits until no other child of this module runs, and returns the turn to fork one.
pub fn reserve() -> Turn {
    Turn(ONE_CHILD.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Forks a child that runs `write` on a buffered pipe to this process and exits. Returns once
/// the child exists: whatever the caller's locks protect may change from then on without the
/// child seeing it.
///
/// `write` runs only in the child, under the rules of the module docs. An error from `fork` or
/// `pipe` (no memory, too many processes) is returned, and nothing was started.
pub fn spawn(turn: Turn, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<Child> {
    let Turn(one) = turn;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nothing else.
    let (read, write_end) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the child runs only what the module docs allow and leaves through `_exit`.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read);
            let status = child_main(parent, write_end, write);
            // SAFETY: _exit ends the child without running anything of the parent's.
            unsafe { libc::_exit(status) }
        }
        pid => {
            drop(write_end);
            Ok(Child { pid, read, reaped: false, _one: one })
        }
    }
}

/// The child's whole life; returns its exit status.
fn child_main(parent: libc::pid_t, pipe: File, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> i32 {
    // SAFETY: prctl, getppid and setpriority only change or read this process's own settings.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            return ORPHANED;
        }
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
    let run = || {
        let mut out = BufWriter::with_capacity(1 << 20, pipe);
        write(&mut out)?;
        out.flush()
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(())) => 0,
        Ok(Err(_)) => FAILED,
        Err(_) => PANICKED,
    }
}

impl Child {
    /// Reads everything the child writes until it closes the pipe, then reaps it. The bytes are
    /// returned only if the child exited normally, so a child that failed or was killed part way
    /// never passes off a truncated encoding as whole.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let read = self.read.read_to_end(&mut out);
        let status = self.reap()?;
        read?;
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            return Ok(out);
        }
        let why = if libc::WIFSIGNALED(status) {
            format!("was killed by signal {}", libc::WTERMSIG(status))
        } else {
            match libc::WEXITSTATUS(status) {
                FAILED => "could not write its output".to_owned(),
                PANICKED => "panicked".to_owned(),
                ORPHANED => "started after the thread that forked it had gone".to_owned(),
                other => format!("exited with status {other}"),
            }
        };
        Err(io::Error::other(format!("the forked encoder (pid {}) {why} after {} bytes", self.pid, out.len())))
    }

    /// Waits for the child to exit and returns its wait status.
    fn reap(&mut self) -> io::Result<i32> {
        let mut status = 0;
        loop {
            // SAFETY: `pid` is our own child, not reaped yet; `status` is a valid out pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                self.reaped = true;
                return Ok(status);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for Child {
    /// A child not collected (its caller failed or panicked first) is killed and reaped, so it
    /// neither runs on nor stays a zombie.
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: `pid` is our own child, not reaped yet, so the pid is still ours.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.reap();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use super::*;

    #[test]
    fn the_child_sees_the_state_at_the_fork_and_not_later_changes() {
        let state = Arc::new(RwLock::new(vec![7u8; 3 << 20]));
        let child = {
            let s = state.read().unwrap();
            spawn(reserve(), |w| {
                // Slow enough that the parent's change below lands while this runs.
                std::thread::sleep(std::time::Duration::from_millis(200));
                w.write_all(&s)
            })
            .unwrap()
        };
        // The lock is free again at once: the parent writes while the child encodes.
        state.write().unwrap().fill(9);
        let got = child.finish().unwrap();
        assert_eq!(got.len(), 3 << 20);
        assert!(got.iter().all(|b| *b == 7), "the child saw a change made after the fork");
    }

    #[test]
    fn a_failing_child_yields_an_error_not_its_partial_output() {
        let child = spawn(reserve(), |w| {
            w.write_all(b"partial")?;
            w.flush()?;
            Err(io::Error::other("disk on fire"))
        })
        .unwrap();
        let err = child.finish().unwrap_err().to_string();
        assert!(err.contains("could not write its output") && err.contains("after 7 bytes"), "{err}");
    }

    #[test]
    fn a_panicking_child_is_reported() {
        let child = spawn(reserve(), |_| panic!("boom")).unwrap();
        let err = child.finish().unwrap_err().to_string();
        assert!(err.contains("panicked"), "{err}");
    }

    #[test]
    fn an_abandoned_child_is_killed_and_reaped() {
        let child = spawn(reserve(), |_| {
            std::thread::sleep(std::time::Duration::from_secs(600));
            Ok(())
        })
        .unwrap();
        let pid = child.pid;
        drop(child);
        // SAFETY: signal 0 only checks whether the pid exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "child {pid} still exists after its handle was dropped");
    }
}
