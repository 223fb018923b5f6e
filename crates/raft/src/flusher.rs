//! Group commit for sled: one flush covers every write made before its waiters enqueued.
//!
//! Every group on a node shares one `sled::Db`, so a flush of the Db makes every group's
//! pending appends durable at once. A dedicated thread takes all waiters queued so far, runs one
//! `Db::flush`, and answers them all. A waiter enqueues only after its own write, and a flush
//! starts only after its waiters were dequeued, so each waiter's write is covered by the flush
//! that answers it. (sled's `flush_async` is not used: concurrent calls from many groups were
//! seen to hang.)

use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

/// Someone waiting for a flush: a task, or a callback run on the flusher thread. Callbacks run
/// in the order they were queued, so completions reach openraft in log order.
enum Waiter {
    Task(oneshot::Sender<Result<(), String>>),
    Call(Box<dyn FnOnce(Result<(), String>) + Send>),
}

/// A node's flusher. Cheap to clone.
#[derive(Clone)]
pub struct Flusher {
    tx: Arc<mpsc::Sender<Waiter>>,
}

impl Flusher {
    /// Starts the flush thread for `db`. It ends when the last clone is dropped.
    pub fn new(db: sled::Db) -> Self {
        let (tx, rx) = mpsc::channel::<Waiter>();
        std::thread::Builder::new()
            .name("sled-flusher".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    let res = db.flush().map(|_| ()).map_err(|e| e.to_string());
                    if let Err(e) = &res {
                        tracing::error!(error = %e, "sled flush failed");
                    }
                    for w in batch {
                        match w {
                            Waiter::Task(tx) => {
                                let _ = tx.send(res.clone());
                            }
                            Waiter::Call(f) => f(res.clone()),
                        }
                    }
                }
            })
            .expect("spawn the flusher thread");
        Self { tx: Arc::new(tx) }
    }

    /// Returns once everything written to the Db before this call is on disk.
    pub async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Waiter::Task(tx)).map_err(|_| "flusher stopped".to_owned())?;
        rx.await.map_err(|_| "flusher stopped".to_owned())?
    }

    /// Runs `done` on the flusher thread once everything written before this call is on disk,
    /// without waiting for it here.
    pub fn flush_then(&self, done: impl FnOnce(Result<(), String>) + Send + 'static) {
        if let Err(mpsc::SendError(Waiter::Call(f))) = self.tx.send(Waiter::Call(Box::new(done))) {
            f(Err("flusher stopped".to_owned()));
        }
    }
}
