//! Bootstrapping etcd on one control plane, waiting while the node cannot take it yet.
//!
//! A real node that was just configured (or has just rebooted) answers `Bootstrap` with
//! `FailedPrecondition: bootstrap is not available yet` until its container runtime is
//! up, and `time is not in sync yet` until its clock is; before that it may not answer
//! at all (installing, rebooting). Both are retried with a doubling backoff until a
//! deadline the caller chooses (minutes on real hardware, well under a second in
//! tests). `AlreadyExists` is success: etcd was bootstrapped before, by us or anyone.
//! Anything else fails at once: a worker (`Unimplemented`), a refused certificate, a
//! connection lost mid-call (the node may have acted; the caller records that as
//! unknown rather than asking again).

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, instrument, warn};

use crate::api::{BootstrapOutcome, ClientIdentity, ConnectOptions, Credentials, NodeClient};
use crate::error::{ApiErrorKind, Error, Result};

/// Delays between attempts: `initial`, doubling, never above `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// A node usually takes seconds to a few minutes: ask often at first (a node that is
    /// nearly up costs little waiting), then every 10 s.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay after `attempt` failed attempts (1-based).
    pub fn delay(&self, attempt: usize) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(2u32.saturating_pow(doublings.min(30)))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// How long to keep asking, and how.
#[derive(Debug, Clone, Copy)]
pub struct BootstrapOptions {
    /// Total time allowed, from the first attempt; one last attempt is made at the
    /// deadline.
    pub timeout: Duration,
    pub backoff: Backoff,
    pub connect: ConnectOptions,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootstrapReport {
    pub outcome: BootstrapOutcome,
    /// Calls made (1 when the node took the first).
    pub attempts: usize,
    pub waited: Duration,
}

/// Whether asking again can succeed without bootstrapping twice: the request never
/// reached the node, or the node said it cannot take it yet.
fn worth_retrying(error: &Error) -> bool {
    matches!(
        error.api_kind(),
        Some(ApiErrorKind::Unreachable | ApiErrorKind::Timeout | ApiErrorKind::NotReady)
    )
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64())
}

/// Bootstrap etcd on the control plane at `endpoint` (one new mTLS connection per
/// attempt, since a rebooting node drops its connections), retrying as the module docs
/// say until `options.timeout`.
#[instrument(skip_all, fields(node = %endpoint))]
pub async fn bootstrap(
    endpoint: &str,
    identity: &ClientIdentity,
    options: &BootstrapOptions,
) -> Result<BootstrapReport> {
    let credentials = Credentials::Mutual(identity.clone());
    let started = Instant::now();
    let deadline = started + options.timeout;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let attempt = async {
            let mut client = NodeClient::connect(endpoint, &credentials, &options.connect).await?;
            client.bootstrap().await
        };
        let error = match attempt.await {
            Ok(outcome) => {
                if attempts > 1 {
                    info!(
                        attempts,
                        "etcd bootstrap on {endpoint} accepted after {}s",
                        seconds(started.elapsed())
                    );
                }
                return Ok(BootstrapReport {
                    outcome,
                    attempts,
                    waited: started.elapsed(),
                });
            }
            Err(error) if worth_retrying(&error) => error,
            Err(error) => return Err(error),
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::BootstrapUnavailable {
                node: endpoint.to_string(),
                waited: seconds(now - started),
                attempts,
                last: error.to_string(),
            });
        }
        let delay = options.backoff.delay(attempts).min(deadline - now);
        if attempts == 1 {
            // Said once at the default log level: a real node can take minutes.
            warn!(
                "etcd bootstrap on {endpoint} is not available yet ({error}); retrying for up to {}s",
                seconds(options.timeout)
            );
        } else {
            info!(
                attempts,
                "etcd bootstrap on {endpoint} still not available after {}s; next attempt in {}s",
                seconds(now - started),
                seconds(delay)
            );
        }
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let backoff = Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(2),
        };
        let delays: Vec<u128> = (1..=6).map(|a| backoff.delay(a).as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 2000, 2000]);
        assert_eq!(backoff.delay(usize::MAX), Duration::from_secs(2));
    }

    #[test]
    fn only_answers_that_cannot_have_bootstrapped_are_retried() {
        let api = |kind| Error::Api {
            call: "Bootstrap",
            node: "n".into(),
            kind,
            message: "m".into(),
        };
        assert!(worth_retrying(&api(ApiErrorKind::NotReady)));
        assert!(worth_retrying(&api(ApiErrorKind::Unreachable)));
        assert!(!worth_retrying(&api(ApiErrorKind::ConnectionLost)));
        assert!(!worth_retrying(&api(ApiErrorKind::Rejected)));
        assert!(!worth_retrying(&api(ApiErrorKind::Unauthenticated)));
    }
}
