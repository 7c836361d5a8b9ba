//! Service-account keys generated ahead of the clusters that will need them.
//!
//! An RSA-4096 key is the one slow part of a cluster's secrets (about a second of CPU
//! each, OpenSSL's prime search). A run that knows it will create several clusters
//! one after another (`infraflux lab run` brings up each environment in promotion
//! order) can start their keys at once, so that the keys of later clusters are made
//! on an idle core while earlier clusters apply, instead of on their critical path.
//!
//! Nothing is generated unless [`prefetch_service_account_keys`] asks for it. Each key
//! is handed out once; a key never taken dies with the process, never written anywhere.

use std::sync::{Condvar, Mutex, OnceLock};

use crate::error::Result;
use crate::secrets::generate_service_account_key;

#[derive(Default)]
struct Pool {
    /// Keys generated and not handed out yet.
    ready: Vec<String>,
    /// Keys asked for that no worker has started.
    queued: usize,
    /// Keys asked for and not finished (queued or being generated).
    pending: usize,
}

fn shared() -> &'static (Mutex<Pool>, Condvar) {
    static POOL: OnceLock<(Mutex<Pool>, Condvar)> = OnceLock::new();
    POOL.get_or_init(|| (Mutex::new(Pool::default()), Condvar::new()))
}

fn lock() -> std::sync::MutexGuard<'static, Pool> {
    // A worker never panics while holding the lock; a poisoned pool still holds keys.
    shared().0.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start generating `count` more service-account keys in the background, on at most as
/// many threads as the machine has cores. Returns at once.
pub fn prefetch_service_account_keys(count: usize) {
    if count == 0 {
        return;
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(count);
    {
        let mut pool = lock();
        pool.queued += count;
        pool.pending += count;
    }
    for _ in 0..workers {
        std::thread::spawn(work);
    }
}

/// One background worker: generates queued keys until none is left.
fn work() {
    loop {
        {
            let mut pool = lock();
            if pool.queued == 0 {
                return;
            }
            pool.queued -= 1;
        }
        let key = generate_service_account_key();
        let mut pool = lock();
        pool.pending -= 1;
        // A failure here is not reported: the taker generates its own key and reports
        // that error if it fails again.
        if let Ok(key) = key {
            pool.ready.push(key);
        }
        shared().1.notify_all();
    }
}

/// A service-account key: one generated ahead if any is ready or on its way, else a
/// fresh one generated now.
pub fn service_account_key() -> Result<String> {
    let mut pool = lock();
    loop {
        if let Some(key) = pool.ready.pop() {
            return Ok(key);
        }
        if pool.pending == 0 {
            drop(pool);
            return generate_service_account_key();
        }
        pool = shared().1.wait(pool).unwrap_or_else(|e| e.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool is process-wide, so this is the only test that touches it.
    #[test]
    fn keys_asked_for_ahead_are_handed_out_once_each_then_fresh_ones_are_made() {
        prefetch_service_account_keys(2);
        let first = service_account_key().unwrap();
        let second = service_account_key().unwrap();
        assert_ne!(first, second, "a key generated ahead is handed out once");
        {
            let pool = lock();
            assert_eq!((pool.ready.len(), pool.pending, pool.queued), (0, 0, 0));
        }
        // Nothing left ahead: the next key is generated on the spot, and is another.
        let third = service_account_key().unwrap();
        assert!(third != first && third != second);
        for key in [&first, &second, &third] {
            let rsa = openssl::rsa::Rsa::private_key_from_pem(key.as_bytes()).unwrap();
            assert_eq!(rsa.size() * 8, 4096);
            assert!(rsa.check_key().unwrap());
        }
    }
}
