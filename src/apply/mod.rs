//! Stage 5: apply a plan — a parallel walk of the changes in dependency order.
//!
//! - **Order and parallelism.** A change starts once every change in its `wait_for` has
//!   finished. At most `parallelism` operations run at once (default 10), and at most
//!   `limit` per [`ConcurrencyKey`] the provider names. Among ready changes, the one with
//!   the longest chain of work after it goes first (critical-path scheduling).
//! - **Known values.** Right before a change runs, its references are resolved again from
//!   state — by then its dependencies are applied, so values unknown at plan time are
//!   known — and the provider plans it once more. The final plan must agree with the
//!   reviewed one: same action, same values wherever the reviewed plan knew them.
//! - **State after every resource.** `PendingCreate` / `PendingDelete` is recorded (and
//!   persisted) before a create or delete starts, the result right after it finishes.
//!   An interrupted apply therefore never loses track of an object: the next plan reads
//!   pending records and adopts or cleans up (see `plan::refresh`).
//! - **Failures.** A failed change stops only what depends on it (each reported once as
//!   skipped because of it); independent branches run to the end.
//! - **Cancellation.** Once the token is cancelled no new change starts; changes in
//!   flight finish and are recorded.
//! - **Destroy** plans carry reversed edges, so the same walk deletes dependants first.
//!
//! The engine never prints: progress goes to a [`Reporter`]. The caller holds the state
//! lock for the duration.

mod execute;

use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use infraflux_provider::{ConcurrencyKey, ResourceRef};
use tokio::task::JoinSet;
pub use tokio_util::sync::CancellationToken;

use crate::plan::resolve::{lookup_recorded, resolve_references};
use crate::plan::{Action, Change, Plan, Reason, apply_drift};
use crate::registry::ProviderRegistry;
use crate::state::{self, StateDocument, StateStore};
use crate::vocabulary::ResourceAddr;

/// Default number of operations in flight. Providers bound what a backend cannot take
/// at once themselves (PVE's storage lock: `proxmox.storage_concurrency`; a cluster's
/// machine configs: one node at a time), so this only caps the client: at 10, 30 VMs
/// over 3 nodes took 3 rounds of their 6-call chain (1.8 × the floor at 200 ms per
/// answer, README "Apply against fakepve"); at 32 they take one (1.35 ×).
pub const DEFAULT_PARALLELISM: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the plan was made for another state (lineage {plan}, the state's is {state})")]
    Lineage { plan: uuid::Uuid, state: uuid::Uuid },
    #[error("the state changed since the plan was made (serial {plan}, now {state})")]
    Serial { plan: u64, state: u64 },
    #[error("no provider registered for `{provider}` (needed by `{address}`)")]
    NoProvider {
        provider: String,
        address: ResourceAddr,
    },
    /// State could not be saved; the apply stopped starting new work.
    #[error("cannot save state; the apply stopped (changes in flight were finished)")]
    Persist {
        #[source]
        source: state::Error,
    },
}

/// Progress of an apply. Called from the engine's tasks; implementations must be quick
/// (print or send to a channel).
pub trait Reporter: Send + Sync {
    fn started(&self, address: &ResourceAddr, action: Action) {
        let _ = (address, action);
    }
    fn finished(&self, address: &ResourceAddr, action: Action, elapsed: Duration) {
        let _ = (address, action, elapsed);
    }
    fn failed(&self, address: &ResourceAddr, action: Action, error: &str, elapsed: Duration) {
        let _ = (address, action, error, elapsed);
    }
    /// Not started because `because` failed (reported once per resource).
    fn skipped(&self, address: &ResourceAddr, because: &ResourceAddr) {
        let _ = (address, because);
    }
}

/// A reporter that reports nothing.
pub struct NoReporter;
impl Reporter for NoReporter {}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub parallelism: usize,
    pub cancel: CancellationToken,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: DEFAULT_PARALLELISM,
            cancel: CancellationToken::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub address: ResourceAddr,
    pub action: Action,
    pub message: String,
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct ApplySummary {
    /// Changes made, in the order they finished (no-ops left out).
    pub done: Vec<(ResourceAddr, Action)>,
    pub failed: Vec<Failure>,
    /// (resource, the failed resource it waited for).
    pub skipped: Vec<(ResourceAddr, ResourceAddr)>,
    /// Never started because the apply was cancelled.
    pub not_started: Vec<ResourceAddr>,
    pub cancelled: bool,
    /// The state as last persisted.
    pub state: StateDocument,
}

impl ApplySummary {
    pub fn is_success(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && !self.cancelled
    }
}

/// The state document shared by the walk, persisted after every change to it.
pub(crate) struct Journal {
    state: Mutex<StateDocument>,
    store: Arc<dyn StateStore>,
}

impl Journal {
    /// Change the document, bump its serial and persist it before returning.
    pub(crate) fn write(
        &self,
        change: impl FnOnce(&mut StateDocument),
    ) -> Result<(), state::Error> {
        let mut state = self.state.lock().expect("state lock");
        change(&mut state);
        // A machine's identity is recorded with its first resource (the VM's pending
        // create) and dropped with its last.
        state.machines = crate::graph::machines::recorded_machines(&*state);
        state.serial += 1;
        let persist = || self.store.persist(&state);
        // Stores write files: keep a multi-threaded runtime's other work going meanwhile.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(persist),
            _ => persist(),
        }
    }

    pub(crate) fn read<R>(&self, f: impl FnOnce(&StateDocument) -> R) -> R {
        f(&self.state.lock().expect("state lock"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeState {
    Waiting,
    Running,
    Done,
    Failed,
    Skipped,
}

/// Apply `plan` to `state` (the document the plan was made from), persisting through
/// `store` after every resource.
pub async fn apply(
    plan: &Plan,
    state: StateDocument,
    store: Arc<dyn StateStore>,
    providers: &ProviderRegistry,
    reporter: Arc<dyn Reporter>,
    options: &ApplyOptions,
) -> Result<ApplySummary, Error> {
    if plan.lineage != state.lineage {
        return Err(Error::Lineage {
            plan: plan.lineage,
            state: state.lineage,
        });
    }
    if plan.serial != state.serial {
        return Err(Error::Serial {
            plan: plan.serial,
            state: state.serial,
        });
    }
    for change in plan
        .changes
        .iter()
        .filter(|c| c.action.operation().is_some())
    {
        if providers.get(&change.provider).is_none() {
            return Err(Error::NoProvider {
                provider: change.provider.clone(),
                address: change.address.clone(),
            });
        }
    }

    let journal = Arc::new(Journal {
        state: Mutex::new(state),
        store,
    });
    if !plan.drift.is_empty() {
        journal
            .write(|state| apply_drift(state, &plan.drift))
            .map_err(|source| Error::Persist { source })?;
    }

    let mut walk = Walk::new(plan, journal.clone(), providers, reporter, options);
    let persist_error = walk.run().await;
    let mut summary = walk.summary;
    summary.state = journal.read(Clone::clone);
    match persist_error {
        Some(source) => Err(Error::Persist { source }),
        None => Ok(summary),
    }
}

struct Walk<'a> {
    plan: &'a Plan,
    journal: Arc<Journal>,
    providers: &'a ProviderRegistry,
    reporter: Arc<dyn Reporter>,
    options: &'a ApplyOptions,
    nodes: Vec<NodeState>,
    remaining: Vec<usize>,
    dependants: Vec<Vec<usize>>,
    priority: Vec<u32>,
    ready: BinaryHeap<(u32, std::cmp::Reverse<usize>)>,
    in_flight: usize,
    keys: HashMap<String, usize>,
    /// Each change's rollout (see [`infraflux_provider::Rollout`]), and the change that
    /// stopped each rollout that failed.
    rollouts: Vec<Option<(String, usize)>>,
    stopped: HashMap<String, ResourceAddr>,
    summary: ApplySummary,
}

/// What a finished task reports back.
struct Outcome {
    index: usize,
    key: Option<String>,
    elapsed: Duration,
    result: Result<(), execute::Failed>,
}

impl<'a> Walk<'a> {
    fn new(
        plan: &'a Plan,
        journal: Arc<Journal>,
        providers: &'a ProviderRegistry,
        reporter: Arc<dyn Reporter>,
        options: &'a ApplyOptions,
    ) -> Self {
        let count = plan.changes.len();
        let position: HashMap<&ResourceAddr, usize> = plan
            .changes
            .iter()
            .enumerate()
            .map(|(i, c)| (&c.address, i))
            .collect();
        let mut remaining = vec![0; count];
        let mut dependants = vec![Vec::new(); count];
        for (i, change) in plan.changes.iter().enumerate() {
            for before in &change.wait_for {
                if let Some(&j) = position.get(before) {
                    remaining[i] += 1;
                    dependants[j].push(i);
                }
            }
        }
        // Longest chain of real work from each change to the end (changes are in an
        // execution order, so dependants come later).
        let mut priority = vec![0u32; count];
        for i in (0..count).rev() {
            let weight = u32::from(plan.changes[i].action.operation().is_some());
            let after = dependants[i]
                .iter()
                .map(|&d| priority[d])
                .max()
                .unwrap_or(0);
            priority[i] = weight + after;
        }
        let ready = (0..count)
            .filter(|&i| remaining[i] == 0)
            .map(|i| (priority[i], std::cmp::Reverse(i)))
            .collect();
        // Each change's rollout and its position in it.
        let rollouts = plan
            .changes
            .iter()
            .map(|change| {
                plan.rollout_of(&change.address)
                    .map(|(rollout, position)| (rollout.key.clone(), position))
            })
            .collect();
        Walk {
            plan,
            journal: journal.clone(),
            providers,
            reporter,
            options,
            nodes: vec![NodeState::Waiting; count],
            remaining,
            dependants,
            priority,
            ready,
            in_flight: 0,
            keys: HashMap::new(),
            rollouts,
            stopped: HashMap::new(),
            summary: ApplySummary {
                done: Vec::new(),
                failed: Vec::new(),
                skipped: Vec::new(),
                not_started: Vec::new(),
                cancelled: false,
                state: StateDocument::new(String::new()),
            },
        }
    }

    /// Walk to the end; returns the persistence error that stopped it, if one did.
    async fn run(&mut self) -> Option<state::Error> {
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut stop: Option<state::Error> = None;
        let parallelism = self.options.parallelism.max(1);
        loop {
            let stopping = stop.is_some() || self.options.cancel.is_cancelled();
            if !stopping && let Err(error) = self.dispatch(&mut tasks, parallelism) {
                stop = Some(error);
            }
            if self.in_flight == 0 {
                break;
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let outcome = match joined {
                Ok(outcome) => outcome,
                Err(error) => std::panic::resume_unwind(error.into_panic()),
            };
            if let Err(error) = self.finish(outcome)
                && stop.is_none()
            {
                stop = Some(error);
            }
        }
        self.summary.cancelled = self.options.cancel.is_cancelled();
        self.summary.not_started = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| {
                **n == NodeState::Waiting && self.plan.changes[*i].action.operation().is_some()
            })
            .map(|(i, _)| self.plan.changes[i].address.clone())
            .collect();
        stop
    }

    /// Start ready changes while there is room.
    fn dispatch(
        &mut self,
        tasks: &mut JoinSet<Outcome>,
        parallelism: usize,
    ) -> Result<(), state::Error> {
        let mut deferred = Vec::new();
        while self.in_flight < parallelism
            && let Some(entry) = self.ready.pop()
        {
            let index = entry.1.0;
            let change = &self.plan.changes[index];
            match change.action {
                Action::NoOp => {
                    self.complete(index);
                    continue;
                }
                Action::Read => {
                    let refreshed = change.refreshed.as_deref().cloned();
                    let address = change.address.clone();
                    let started = Instant::now();
                    self.journal
                        .write(|state| state.set_record(&address, refreshed))?;
                    self.reporter
                        .finished(&change.address, change.action, started.elapsed());
                    self.summary
                        .done
                        .push((change.address.clone(), change.action));
                    self.complete(index);
                    continue;
                }
                _ => {}
            }
            if let Some((rollout, position)) = &self.rollouts[index] {
                if let Some(because) = self.stopped.get(rollout).cloned() {
                    self.skip(index, because);
                    continue;
                }
                if self.rollout_waits(rollout, *position) {
                    deferred.push(entry);
                    continue;
                }
            }
            let provider = self
                .providers
                .get(&change.provider)
                .expect("checked before the walk")
                .clone();
            let resolved = match change.desired.as_ref().map(|d| self.resolve(d)) {
                Some(Err(message)) => {
                    self.reporter
                        .failed(&change.address, change.action, &message, Duration::ZERO);
                    self.fail(index, change.action, message);
                    continue;
                }
                Some(Ok(resolved)) => Some(resolved),
                None => None,
            };
            let key: Option<ConcurrencyKey> = change.action.operation().and_then(|op| {
                let attributes = resolved
                    .as_ref()
                    .or(change.before_attributes())
                    .cloned()
                    .unwrap_or_default();
                provider.concurrency_key(
                    op,
                    &ResourceRef {
                        address: change.address.to_string(),
                        kind: change.address.kind.clone(),
                    },
                    &attributes,
                )
            });
            if let Some(key) = &key
                && self.keys.get(&key.key).copied().unwrap_or(0) >= key.limit.max(1)
            {
                deferred.push(entry);
                continue;
            }
            let key = key.map(|k| k.key);
            if let Some(key) = &key {
                *self.keys.entry(key.clone()).or_default() += 1;
            }
            self.nodes[index] = NodeState::Running;
            self.in_flight += 1;
            self.reporter.started(&change.address, change.action);
            let journal = self.journal.clone();
            let leaving = self.leaving_first(change);
            let reporter = self.reporter.clone();
            let change = change.clone();
            let run = execute::Run {
                teardown: self.plan.mode == crate::plan::PlanMode::Destroy,
            };
            tasks.spawn(async move {
                let started = Instant::now();
                let result = match execute::leave_first(&leaving, &journal, reporter.as_ref(), run)
                    .await
                {
                    Ok(()) => {
                        execute::execute(&change, resolved, provider.as_ref(), &journal, run).await
                    }
                    Err(failed) => Err(failed),
                };
                Outcome {
                    index,
                    key,
                    elapsed: started.elapsed(),
                    result,
                }
            });
        }
        self.ready.extend(deferred);
        Ok(())
    }

    /// Resolve the change's references from state (its dependencies are applied).
    /// The dependants replaced with `change` (its host), which leave before it goes
    /// ([`execute::leave_first`]).
    fn leaving_first(&self, change: &Change) -> Vec<execute::LeavingFirst> {
        if !change.action.is_replace() {
            return Vec::new();
        }
        self.plan
            .changes
            .iter()
            .filter(|d| {
                d.reason == Some(Reason::HostReplaced) && d.wait_for.contains(&change.address)
            })
            .filter_map(|d| {
                Some(execute::LeavingFirst {
                    change: d.clone(),
                    provider: self.providers.get(&d.provider)?.clone(),
                })
            })
            .collect()
    }

    fn resolve(
        &self,
        desired: &infraflux_provider::Attributes,
    ) -> Result<infraflux_provider::Attributes, String> {
        self.journal.read(|state| {
            let mut lookup_reference = |reference: &infraflux_provider::Reference| {
                lookup_recorded(state, self.providers, reference)
            };
            resolve_references(desired, &mut lookup_reference)
                .map(|r| r.attributes)
                .map_err(|(attribute, reference)| {
                    format!(
                        "attribute `{attribute}` refers to `{}` attribute `{}`, which state does not have",
                        reference.address, reference.attribute
                    )
                })
        })
    }

    fn finish(&mut self, outcome: Outcome) -> Result<(), state::Error> {
        self.in_flight -= 1;
        if let Some(key) = &outcome.key
            && let Some(count) = self.keys.get_mut(key)
        {
            *count -= 1;
        }
        let change = &self.plan.changes[outcome.index];
        match outcome.result {
            Ok(()) => {
                self.reporter
                    .finished(&change.address, change.action, outcome.elapsed);
                self.summary
                    .done
                    .push((change.address.clone(), change.action));
                self.complete(outcome.index);
                Ok(())
            }
            Err(failed) => {
                let message = failed.message;
                if let Some((rollout, _)) = &self.rollouts[outcome.index] {
                    self.stopped
                        .entry(rollout.clone())
                        .or_insert_with(|| change.address.clone());
                }
                self.reporter
                    .failed(&change.address, change.action, &message, outcome.elapsed);
                self.fail(outcome.index, change.action, message);
                match failed.persist {
                    Some(error) => Err(error),
                    None => Ok(()),
                }
            }
        }
    }

    fn complete(&mut self, index: usize) {
        self.nodes[index] = NodeState::Done;
        for &dependant in &self.dependants[index] {
            self.remaining[dependant] -= 1;
            if self.remaining[dependant] == 0 && self.nodes[dependant] == NodeState::Waiting {
                self.ready
                    .push((self.priority[dependant], std::cmp::Reverse(dependant)));
            }
        }
    }

    /// Whether a step of `rollout` before `position` has not finished: one at a time,
    /// in order.
    fn rollout_waits(&self, rollout: &str, position: usize) -> bool {
        self.rollouts
            .iter()
            .zip(&self.nodes)
            .any(|(theirs, state)| {
                matches!(state, NodeState::Waiting | NodeState::Running)
                    && theirs
                        .as_ref()
                        .is_some_and(|(key, at)| key == rollout && *at < position)
            })
    }

    /// Skip `index`, not started because `because` stopped its rollout, and everything
    /// downstream of it.
    fn skip(&mut self, index: usize, because: ResourceAddr) {
        self.nodes[index] = NodeState::Skipped;
        let skipped = &self.plan.changes[index];
        self.reporter.skipped(&skipped.address, &because);
        self.summary
            .skipped
            .push((skipped.address.clone(), because.clone()));
        self.skip_downstream(index, &because);
    }

    /// Mark `index` failed and everything downstream of it skipped (once each).
    fn fail(&mut self, index: usize, action: Action, message: String) {
        self.nodes[index] = NodeState::Failed;
        let because = self.plan.changes[index].address.clone();
        self.summary.failed.push(Failure {
            address: because.clone(),
            action,
            message,
        });
        self.skip_downstream(index, &because);
    }

    /// Everything downstream of `index` skipped (once each), because of `because`.
    fn skip_downstream(&mut self, index: usize, because: &ResourceAddr) {
        let mut stack = self.dependants[index].clone();
        while let Some(next) = stack.pop() {
            if self.nodes[next] != NodeState::Waiting {
                continue;
            }
            self.nodes[next] = NodeState::Skipped;
            let skipped = &self.plan.changes[next];
            // A no-op has nothing to skip; reporting it would be noise.
            if skipped.action != Action::NoOp {
                self.reporter.skipped(&skipped.address, because);
                self.summary
                    .skipped
                    .push((skipped.address.clone(), because.clone()));
            }
            stack.extend(self.dependants[next].iter().copied());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
