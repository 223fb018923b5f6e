//! Hands memory that glibc's allocator holds but no longer uses back to the kernel.
//!
//! glibc keeps freed memory in its per-thread arenas for reuse and returns it only from the top
//! of each heap. A node frees a lot in the middle of its heaps (decoded Raft entries, request
//! and snapshot buffers) between the long-lived cache entries, so its RSS stays well above what
//! it uses: in a 300k-key run, `malloc_trim(0)` returned 25–40 MB per node (80–130 bytes per
//! key). A background thread calls it every [`INTERVAL`]; a call takes a few milliseconds and
//! only touches pages that are free.

use std::time::Duration;

/// How often free memory is returned.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Starts the trimming thread. It runs until the process exits. Without glibc, does nothing.
pub fn start() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            // glibc: releases free memory from every arena; returns 1 if any was released.
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        let spawned = std::thread::Builder::new().name("malloc-trim".into()).spawn(|| loop {
            std::thread::sleep(INTERVAL);
            // SAFETY: malloc_trim only takes glibc's own arena locks; it has no preconditions.
            unsafe {
                malloc_trim(0);
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the malloc-trim thread; freed memory stays with the allocator");
        }
    }
}
