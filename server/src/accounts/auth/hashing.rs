//! Where password hashes are computed: a fixed set of threads, so memory stays bounded.
//!
//! One argon2id evaluation with the default parameters fills 19 MiB. Run on the async
//! runtime's blocking pool, sixty-four logins at once meant sixty-four such blocks (1.2 GB),
//! and the allocator kept them cached per thread afterwards. Here exactly `concurrency`
//! threads compute hashes, each reusing its own allocation; a request first waits (at most
//! `wait`) for one of `concurrency` admission permits, and is answered `server_busy` if none
//! frees up in time. Peak memory for hashing is therefore `concurrency` × 19 MiB.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::AuthError;

/// How many hashes at once, and how long a request waits for a turn.
#[derive(Clone, Copy, Debug)]
pub struct HashingLimits {
    /// Hashing threads (and admission permits).
    pub concurrency: usize,
    /// Longest wait for a permit before answering busy.
    pub wait: Duration,
}

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads and their admission. Cheap to clone.
#[derive(Clone)]
pub struct HashingPool {
    permits: Arc<Semaphore>,
    /// Taken by whichever idle thread locks the receiver first. Closing it (dropping every
    /// pool handle) ends the threads.
    jobs: mpsc::Sender<Job>,
    wait: Duration,
}

/// A turn at the hashing threads, held from admission until the hash is computed.
pub struct HashingTurn {
    permit: OwnedSemaphorePermit,
    pool: HashingPool,
}

impl HashingPool {
    /// Starts `limits.concurrency` hashing threads.
    pub fn start(limits: HashingLimits) -> std::io::Result<Self> {
        let concurrency = limits.concurrency.max(1);
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..concurrency {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("tandem-argon2-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take one job, never while hashing.
                        let job = {
                            let receiver = receiver.lock().unwrap_or_else(|p| p.into_inner());
                            receiver.recv()
                        };
                        match job {
                            // A panicking hash must not take a thread away for good; its
                            // caller sees the dropped result as a hashing error.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(mpsc::RecvError) => return,
                        }
                    }
                })?;
        }
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            jobs,
            wait: limits.wait,
        })
    }

    /// Waits for a turn, at most the configured wait; `Busy` if none comes.
    pub async fn admit(&self) -> Result<HashingTurn, AuthError> {
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(HashingTurn {
                permit,
                pool: self.clone(),
            }),
            // Waiting longer would only grow the queue; the client retries after a second.
            Ok(Err(_)) | Err(_) => {
                metrics::counter!("tandem_password_hashing_busy_total").increment(1);
                Err(AuthError::Busy {
                    retry_after: Duration::from_secs(1),
                })
            }
        }
    }
}

impl HashingTurn {
    /// Computes `f` (a hash or a verification) on a hashing thread and ends the turn.
    pub async fn run<T: Send + 'static>(
        self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let (done, result) = oneshot::channel();
        let permit = self.permit;
        let job: Job = Box::new(move || {
            metrics::counter!("tandem_password_hashes_total").increment(1);
            let _ = done.send(f());
            drop(permit);
        });
        self.pool
            .jobs
            .send(job)
            .map_err(|_| AuthError::Hashing("hashing threads stopped".into()))?;
        result
            .await
            .map_err(|_| AuthError::Hashing("hashing thread panicked".into()))
    }
}
