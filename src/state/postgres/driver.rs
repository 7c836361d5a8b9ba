//! The PostgreSQL backend's own async runtime: one worker thread that runs the client,
//! its connection and the lease heartbeats.
//!
//! [`StateStore`](crate::state::StateStore) is synchronous and is called both from plain
//! threads and from inside the engine's tokio runtime (the apply walk persists after
//! every resource). `Runtime::block_on` panics inside another runtime, so instead every
//! call is spawned onto this runtime and its result waited for on a std channel, which
//! works from anywhere: the caller's thread blocks, the work runs on ours.

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

use crate::state::Error;

pub struct Driver {
    /// Always `Some` until dropped.
    runtime: Option<Runtime>,
}

impl Driver {
    pub fn new() -> Result<Self, Error> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("infraflux-postgres")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::Other(format!("cannot start the PostgreSQL client runtime: {e}"))
            })?;
        Ok(Driver {
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> &Handle {
        self.runtime
            .as_ref()
            .expect("runtime lives until drop")
            .handle()
    }

    /// Run `future` on this runtime and wait for its result (from any thread, inside a
    /// runtime or not).
    pub fn run<T: Send + 'static>(&self, future: impl Future<Output = T> + Send + 'static) -> T {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let _ = sender.send(future.await);
        });
        match receiver.recv() {
            Ok(value) => value,
            // The task dropped its sender without sending: it panicked (a bug).
            Err(_) => panic!("a PostgreSQL state task panicked"),
        }
    }

    /// Start `future` in the background (the lease heartbeat).
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        self.handle().spawn(future)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A plain drop waits for the worker and panics inside another runtime (a store
        // dropped in an async test); nothing is left to wait for by now.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_from_plain_threads_and_from_inside_another_runtime() {
        let driver = Driver::new().unwrap();
        assert_eq!(driver.run(async { 1 + 1 }), 2);
        let outer = Builder::new_current_thread().enable_all().build().unwrap();
        let inside = outer.block_on(async { driver.run(async { "inside" }) });
        assert_eq!(inside, "inside");
        // Dropping it inside another runtime does not panic either.
        outer.block_on(async move { drop(driver) });
    }
}
