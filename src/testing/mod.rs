//! Helpers for tests of the engine (unit tests, integration tests and the bench): an
//! in-memory [`StateStore`], a recording [`Reporter`](crate::apply::Reporter) and short
//! constructors. Compiled for `cfg(test)` and with the `testing` feature only.
//!
//! The recording mock provider is its own crate, `providers/mock`
//! (`infraflux-provider-mock`): it depends on the provider contract only, as every
//! provider does.

use std::sync::{Arc, Mutex};

use infraflux_provider::Attributes;
use serde_json::Value;

use crate::graph::DesiredResource;
use crate::state::{self, LockGuard, LockInfo, StateDocument, StateStore};
use crate::vocabulary::ResourceAddr;

/// `name` → `dev/w/mock_thing.<name>`; a full address is parsed as it is.
pub fn addr(name: &str) -> ResourceAddr {
    if name.contains('/') {
        name.parse().expect("valid address")
    } else {
        ResourceAddr::new("dev", "w", "mock_thing", name)
    }
}

/// A `mock_thing` managed by the `mock` provider.
pub fn desired(name: &str, attributes: Value, depends_on: &[&str]) -> DesiredResource {
    let addr = addr(name);
    DesiredResource {
        provider: "mock".into(),
        kind: addr.kind.clone(),
        address: addr,
        attributes: match attributes {
            Value::Object(map) => map,
            _ => Attributes::new(),
        },
        depends_on: depends_on.iter().map(|d| self::addr(d)).collect(),
        prevent_destroy: false,
        origin: "test".into(),
        secrets: Default::default(),
        replace_with: Vec::new(),
        placement: None,
    }
}

/// Keeps documents in memory and every persisted version in order.
#[derive(Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Default)]
struct MemoryInner {
    current: std::collections::BTreeMap<String, StateDocument>,
    history: Vec<StateDocument>,
    persists: usize,
    keep_history: bool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Also keep a copy of every persisted document ([`MemoryStore::history`]).
    pub fn with_history() -> Self {
        let store = Self::default();
        store.inner.lock().expect("store lock").keep_history = true;
        store
    }

    pub fn history(&self) -> Vec<StateDocument> {
        self.inner.lock().expect("store lock").history.clone()
    }

    pub fn persists(&self) -> usize {
        self.inner.lock().expect("store lock").persists
    }

    pub fn document(&self, environment: &str) -> Option<StateDocument> {
        self.inner
            .lock()
            .expect("store lock")
            .current
            .get(environment)
            .cloned()
    }
}

impl StateStore for MemoryStore {
    fn load(&self, environment: &str) -> Result<Option<StateDocument>, state::Error> {
        Ok(self.document(environment))
    }

    fn persist(&self, document: &StateDocument) -> Result<(), state::Error> {
        let mut inner = self.inner.lock().expect("store lock");
        inner.persists += 1;
        if inner.keep_history {
            inner.history.push(document.clone());
        }
        inner
            .current
            .insert(document.environment.clone(), document.clone());
        Ok(())
    }

    fn lock(&self, _environment: &str, info: LockInfo) -> Result<Box<dyn LockGuard>, state::Error> {
        Ok(Box::new(MemoryLock(info)))
    }
}

struct MemoryLock(LockInfo);

impl LockGuard for MemoryLock {
    fn info(&self) -> &LockInfo {
        &self.0
    }
}

/// A store that only counts: for measuring the engine without the cost of copies.
#[derive(Default)]
pub struct CountingStore {
    persists: std::sync::atomic::AtomicUsize,
}

impl CountingStore {
    pub fn persists(&self) -> usize {
        self.persists.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl StateStore for CountingStore {
    fn load(&self, _environment: &str) -> Result<Option<StateDocument>, state::Error> {
        Ok(None)
    }

    fn persist(&self, _document: &StateDocument) -> Result<(), state::Error> {
        self.persists
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn lock(&self, _environment: &str, info: LockInfo) -> Result<Box<dyn LockGuard>, state::Error> {
        Ok(Box::new(MemoryLock(info)))
    }
}

/// One reported event (elapsed times left out so tests can compare them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started(ResourceAddr, crate::plan::Action),
    Finished(ResourceAddr, crate::plan::Action),
    Failed(ResourceAddr, String),
    Skipped(ResourceAddr, ResourceAddr),
}

/// Records every event in order.
#[derive(Default)]
pub struct RecordingReporter {
    events: Mutex<Vec<Event>>,
}

impl RecordingReporter {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("reporter lock").clone()
    }

    fn push(&self, event: Event) {
        self.events.lock().expect("reporter lock").push(event);
    }
}

impl crate::apply::Reporter for RecordingReporter {
    fn started(&self, address: &ResourceAddr, action: crate::plan::Action) {
        self.push(Event::Started(address.clone(), action));
    }
    fn finished(
        &self,
        address: &ResourceAddr,
        action: crate::plan::Action,
        _: std::time::Duration,
    ) {
        self.push(Event::Finished(address.clone(), action));
    }
    fn failed(
        &self,
        address: &ResourceAddr,
        _: crate::plan::Action,
        error: &str,
        _: std::time::Duration,
    ) {
        self.push(Event::Failed(address.clone(), error.to_string()));
    }
    fn skipped(&self, address: &ResourceAddr, because: &ResourceAddr) {
        self.push(Event::Skipped(address.clone(), because.clone()));
    }
}

/// The schema of `mock_thing`: `value` (input), `zone` (input, forces replacement),
/// `out` (computed), `secret` (computed, sensitive), `input` (input, usually a reference).
pub fn mock_schemas() -> Vec<infraflux_provider::ResourceSchema> {
    use infraflux_provider::{AttributeSchema, ResourceSchema};
    vec![ResourceSchema::new(
        "mock_thing",
        vec![
            AttributeSchema::input("value"),
            AttributeSchema::input("input"),
            AttributeSchema::input("zone").force_new(),
            AttributeSchema::computed("out"),
            AttributeSchema::computed("secret").sensitive(),
        ],
    )]
}

/// A runtime of either flavour: `plan` works on several threads on a multi-thread one
/// (two workers here) and on this one alone on a current-thread one.
pub fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    let mut builder = if multi_thread {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2);
        builder
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().expect("a runtime starts")
}
