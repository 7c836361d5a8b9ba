//! A recording mock provider for engine tests and benchmarks.
//!
//! It keeps a "world" of objects (what a real provider would find on Proxmox or in a
//! cluster), records every call in the order it started and finished, and can be told to
//! be slow or to fail for chosen resources. The world can live in a JSON file (written
//! atomically after every change) so a test can kill a process in the middle of an apply
//! and check afterwards that nothing was created twice or lost.
//!
//! Computed attributes are filled on create and update as `"<attribute>-<id>"`, so a
//! dependant that references one sees a value it could not know at plan time.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use infraflux_provider::{
    Attributes, ConcurrencyKey, CreateRequest, CreateResponse, DeleteRequest, Diagnostic,
    ErrorKind, ImportRequest, ImportResponse, Operation, PlanRequest, PlanResponse, Provider,
    ProviderError, ReadOutcome, ReadRequest, ReadResponse, ReadResult, ResourceRef, ResourceSchema,
    Rollout, Severity, UpdateRequest, UpdateResponse, ValidateRequest, ValidateResponse,
};
use serde_json::{Value, json};

/// The provider operations, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// Only through [`MockProvider::fail`]: validation is not recorded as a call.
    Validate,
    Read,
    Plan,
    Create,
    Update,
    Delete,
    Import,
}

/// One recorded event: an operation on a resource started or finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Started(Op, String),
    Finished(Op, String),
}

/// One object in the mock's world.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub id: String,
    pub address: String,
    pub attributes: Attributes,
}

type KeyFn = dyn Fn(Operation, &ResourceRef, &Attributes) -> Option<ConcurrencyKey> + Send + Sync;
type RolloutFn = dyn Fn(Operation, &ResourceRef, &Attributes) -> Option<Rollout> + Send + Sync;

#[derive(Default)]
struct Inner {
    /// Objects by ID.
    objects: BTreeMap<String, Object>,
    next_id: u64,
    calls: Vec<Call>,
    /// The address of each plan request, in order.
    planned: Vec<String>,
    /// `deep` of each read request, in order.
    read_depths: Vec<bool>,
    in_flight: usize,
    max_in_flight: usize,
    in_flight_by_key: HashMap<String, usize>,
    max_in_flight_by_key: HashMap<String, usize>,
}

/// See the crate documentation.
pub struct MockProvider {
    name: String,
    schemas: Vec<ResourceSchema>,
    inner: Mutex<Inner>,
    latency: Mutex<(Duration, HashMap<String, Duration>)>,
    /// (operation, address) → (message, kind of the error).
    failures: Mutex<HashMap<(Op, String), (String, ErrorKind)>>,
    world_file: Option<PathBuf>,
    concurrency_key: Option<Box<KeyFn>>,
    rollout: Option<Box<RolloutFn>>,
}

impl MockProvider {
    pub fn new(name: impl Into<String>, schemas: Vec<ResourceSchema>) -> Self {
        MockProvider {
            name: name.into(),
            schemas,
            inner: Mutex::default(),
            latency: Mutex::default(),
            failures: Mutex::default(),
            world_file: None,
            concurrency_key: None,
            rollout: None,
        }
    }

    /// Keep the world in `path` (loaded now if it exists, rewritten atomically after
    /// every create, update and delete).
    pub fn with_world_file(mut self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        if let Ok(text) = std::fs::read_to_string(&path) {
            let value: Value = serde_json::from_str(&text).expect("mock world file is JSON");
            let inner = self.inner.get_mut().expect("mock lock");
            inner.next_id = value["next_id"].as_u64().unwrap_or(0);
            for object in value["objects"].as_array().into_iter().flatten() {
                let object = Object {
                    id: object["id"].as_str().unwrap_or_default().to_string(),
                    address: object["address"].as_str().unwrap_or_default().to_string(),
                    attributes: object["attributes"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                };
                inner.objects.insert(object.id.clone(), object);
            }
        }
        self.world_file = Some(path);
        self
    }

    /// Derive a per-key concurrency limit from each operation.
    pub fn with_concurrency_key(
        mut self,
        key: impl Fn(Operation, &ResourceRef, &Attributes) -> Option<ConcurrencyKey>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.concurrency_key = Some(Box::new(key));
        self
    }

    /// Derive the rollout each operation belongs to.
    pub fn with_rollout(
        mut self,
        rollout: impl Fn(Operation, &ResourceRef, &Attributes) -> Option<Rollout>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.rollout = Some(Box::new(rollout));
        self
    }

    pub fn into_arc(self) -> Arc<Self> {
        Arc::new(self)
    }

    /// Every create, update and delete (and import) takes this long unless a resource
    /// has its own latency.
    pub fn set_default_latency(&self, latency: Duration) {
        self.latency.lock().expect("mock lock").0 = latency;
    }

    pub fn set_latency(&self, address: &str, latency: Duration) {
        self.latency
            .lock()
            .expect("mock lock")
            .1
            .insert(address.to_string(), latency);
    }

    /// Make `op` fail for `address` (after its latency) until cleared.
    pub fn fail(&self, op: Op, address: &str, message: &str) {
        self.fail_with(op, address, message, ErrorKind::Other);
    }

    /// [`MockProvider::fail`] with an error of `kind` (e.g. `Transient`: an unreachable
    /// API).
    pub fn fail_with(&self, op: Op, address: &str, message: &str, kind: ErrorKind) {
        self.failures
            .lock()
            .expect("mock lock")
            .insert((op, address.to_string()), (message.to_string(), kind));
    }

    pub fn clear_failures(&self) {
        self.failures.lock().expect("mock lock").clear();
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Forget the calls so far, and the most in flight at once (counted from here on).
    pub fn clear_calls(&self) {
        let mut inner = self.lock();
        inner.calls.clear();
        inner.max_in_flight = inner.in_flight;
        let in_flight = inner.in_flight_by_key.clone();
        inner.max_in_flight_by_key = in_flight;
    }

    /// The address of each plan request so far, in order.
    pub fn planned(&self) -> Vec<String> {
        self.lock().planned.clone()
    }

    /// `deep` of each read request so far, in order.
    pub fn read_depths(&self) -> Vec<bool> {
        self.lock().read_depths.clone()
    }

    /// The order in which `op` finished, by address.
    pub fn finished(&self, op: Op) -> Vec<String> {
        self.lock()
            .calls
            .iter()
            .filter_map(|c| match c {
                Call::Finished(o, a) if *o == op => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    /// How many calls of `op` started.
    pub fn count(&self, op: Op) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| matches!(c, Call::Started(o, _) if *o == op))
            .count()
    }

    /// The largest number of create/update/delete calls that ran at once.
    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    pub fn max_in_flight_for_key(&self, key: &str) -> usize {
        self.lock()
            .max_in_flight_by_key
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// The objects in the world, by ID.
    pub fn objects(&self) -> Vec<Object> {
        self.lock().objects.values().cloned().collect()
    }

    /// The object recorded for an address (the first when there are several).
    pub fn object(&self, address: &str) -> Option<Object> {
        self.lock()
            .objects
            .values()
            .find(|o| o.address == address)
            .cloned()
    }

    /// Change an attribute behind the engine's back (drift).
    pub fn set_attribute(&self, address: &str, attribute: &str, value: Value) {
        let mut inner = self.lock();
        if let Some(object) = inner.objects.values_mut().find(|o| o.address == address) {
            object.attributes.insert(attribute.to_string(), value);
        }
        self.save(&inner);
    }

    /// Delete an object behind the engine's back.
    pub fn remove_object(&self, address: &str) {
        let mut inner = self.lock();
        inner.objects.retain(|_, o| o.address != address);
        self.save(&inner);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("mock lock")
    }

    fn schema(&self, kind: &str) -> Option<&ResourceSchema> {
        self.schemas.iter().find(|s| s.kind == kind)
    }

    fn save(&self, inner: &Inner) {
        let Some(path) = &self.world_file else { return };
        let objects: Vec<Value> = inner
            .objects
            .values()
            .map(|o| json!({"id": o.id, "address": o.address, "attributes": o.attributes}))
            .collect();
        let text =
            serde_json::to_string_pretty(&json!({"next_id": inner.next_id, "objects": objects}))
                .expect("world serializes");
        write_atomically(path, &text).expect("mock world file is writable");
    }

    /// Record the start, wait the latency, check for an injected failure.
    async fn begin(
        &self,
        op: Op,
        operation: Option<Operation>,
        resource: &ResourceRef,
        attributes: &Attributes,
    ) -> Result<Option<String>, ProviderError> {
        let key = operation
            .and_then(|operation| self.concurrency_key(operation, resource, attributes))
            .map(|k| k.key);
        {
            let mut inner = self.lock();
            inner
                .calls
                .push(Call::Started(op, resource.address.clone()));
            inner.in_flight += 1;
            inner.max_in_flight = inner.max_in_flight.max(inner.in_flight);
            if let Some(key) = &key {
                let count = inner.in_flight_by_key.entry(key.clone()).or_default();
                *count += 1;
                let count = *count;
                let max = inner.max_in_flight_by_key.entry(key.clone()).or_default();
                *max = (*max).max(count);
            }
        }
        let latency = {
            let latency = self.latency.lock().expect("mock lock");
            latency
                .1
                .get(&resource.address)
                .copied()
                .unwrap_or(latency.0)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let failure = self
            .failures
            .lock()
            .expect("mock lock")
            .get(&(op, resource.address.clone()))
            .cloned();
        if let Some((message, kind)) = failure {
            self.end(op, resource, key.as_deref());
            return Err(ProviderError::new(
                kind,
                op_name(op),
                &resource.address,
                message,
            ));
        }
        Ok(key)
    }

    fn end(&self, op: Op, resource: &ResourceRef, key: Option<&str>) {
        let mut inner = self.lock();
        inner.in_flight -= 1;
        if let Some(key) = key
            && let Some(count) = inner.in_flight_by_key.get_mut(key)
        {
            *count -= 1;
        }
        inner
            .calls
            .push(Call::Finished(op, resource.address.clone()));
    }

    /// Planned attributes with every computed one filled for the object `id`.
    fn complete(&self, kind: &str, id: &str, planned: &Attributes) -> Attributes {
        let mut attributes = planned.clone();
        if let Some(schema) = self.schema(kind) {
            for attribute in schema.attributes.iter().filter(|a| a.computed) {
                let value = attributes.get(&attribute.name);
                if value.is_none_or(infraflux_provider::is_unknown) {
                    attributes.insert(
                        attribute.name.clone(),
                        json!(format!("{}-{id}", attribute.name)),
                    );
                }
            }
        }
        attributes
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Read => "read",
        Op::Plan => "plan",
        Op::Create => "create",
        Op::Update => "update",
        Op::Delete => "delete",
        Op::Import => "import",
        Op::Validate => "validate",
    }
}

/// Write through a temporary file in the same directory and rename it into place.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let directory = path.parent().unwrap_or(Path::new("."));
    let temporary = directory.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[async_trait]
impl Provider for MockProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn schemas(&self) -> Vec<ResourceSchema> {
        self.schemas.clone()
    }

    async fn validate(&self, request: ValidateRequest) -> ValidateResponse {
        let failure = self
            .failures
            .lock()
            .expect("mock lock")
            .get(&(Op::Validate, request.resource.address.clone()))
            .map(|(message, _)| message.clone());
        ValidateResponse {
            diagnostics: failure
                .map(|summary| Diagnostic {
                    severity: Severity::Error,
                    attribute: Some("value".into()),
                    summary,
                    detail: Some("fix the value in the configuration".into()),
                })
                .into_iter()
                .collect(),
        }
    }

    async fn read(&self, request: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let mut inner = self.lock();
        inner.read_depths.push(request.deep);
        let mut results = Vec::new();
        for item in request.resources {
            inner
                .calls
                .push(Call::Started(Op::Read, item.resource.address.clone()));
            // An empty ID is an interrupted create: look the object up by its address
            // (a real provider uses the object's natural key, e.g. a VM's name) and
            // return its ID in the `id` attribute.
            let found = if item.id.is_empty() {
                inner
                    .objects
                    .values()
                    .find(|o| o.address == item.resource.address)
                    .map(|o| {
                        let mut attributes = o.attributes.clone();
                        attributes.insert("id".into(), json!(o.id));
                        attributes
                    })
            } else {
                inner.objects.get(&item.id).map(|o| o.attributes.clone())
            };
            inner
                .calls
                .push(Call::Finished(Op::Read, item.resource.address.clone()));
            let outcome = match (
                self.failures
                    .lock()
                    .expect("mock lock")
                    .get(&(Op::Read, item.resource.address.clone())),
                found,
            ) {
                (Some((message, kind)), _) => ReadOutcome::Failed(ProviderError::new(
                    *kind,
                    "read",
                    &item.resource.address,
                    message,
                )),
                (None, Some(attributes)) => ReadOutcome::Found(attributes),
                (None, None) => ReadOutcome::Gone,
            };
            results.push(ReadResult {
                address: item.resource.address,
                outcome,
            });
        }
        Ok(ReadResponse { results })
    }

    async fn plan(&self, request: PlanRequest<'_>) -> Result<PlanResponse, ProviderError> {
        self.lock().planned.push(request.resource.address.clone());
        let schema = self.schema(&request.resource.kind).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::InvalidInput,
                "plan",
                &request.resource.address,
                format!("unknown resource type `{}`", request.resource.kind),
            )
        })?;
        if let Some((message, _)) = self
            .failures
            .lock()
            .expect("mock lock")
            .get(&(Op::Plan, request.resource.address.clone()))
        {
            return Err(ProviderError::new(
                ErrorKind::InvalidInput,
                "plan",
                &request.resource.address,
                message,
            ));
        }
        Ok(schema.default_plan(request.prior, request.desired))
    }

    async fn create(&self, request: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let key = self
            .begin(
                Op::Create,
                Some(Operation::Create),
                &request.resource,
                &request.planned,
            )
            .await?;
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = format!("mock-{}", inner.next_id);
        let attributes = self.complete(&request.resource.kind, &id, &request.planned);
        inner.objects.insert(
            id.clone(),
            Object {
                id: id.clone(),
                address: request.resource.address.clone(),
                attributes: attributes.clone(),
            },
        );
        self.save(&inner);
        drop(inner);
        self.end(Op::Create, &request.resource, key.as_deref());
        Ok(CreateResponse { id, attributes })
    }

    async fn update(&self, request: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let key = self
            .begin(
                Op::Update,
                Some(Operation::Update),
                &request.resource,
                &request.planned,
            )
            .await?;
        let attributes = self.complete(&request.resource.kind, &request.id, &request.planned);
        let mut inner = self.lock();
        let result = match inner.objects.get_mut(&request.id) {
            Some(object) => {
                object.attributes = attributes.clone();
                Ok(UpdateResponse { attributes })
            }
            None => Err(ProviderError::new(
                ErrorKind::NotFound,
                "update",
                &request.resource.address,
                format!("no object with ID {}", request.id),
            )),
        };
        self.save(&inner);
        drop(inner);
        self.end(Op::Update, &request.resource, key.as_deref());
        result
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), ProviderError> {
        let key = self
            .begin(
                Op::Delete,
                Some(Operation::Delete),
                &request.resource,
                &request.prior,
            )
            .await?;
        let mut inner = self.lock();
        // Deleting what is already gone succeeds, as with real providers.
        inner.objects.remove(&request.id);
        self.save(&inner);
        drop(inner);
        self.end(Op::Delete, &request.resource, key.as_deref());
        Ok(())
    }

    async fn import(&self, request: ImportRequest) -> Result<ImportResponse, ProviderError> {
        let key = self
            .begin(Op::Import, None, &request.resource, &Attributes::new())
            .await?;
        let found = self.lock().objects.get(&request.id).cloned();
        self.end(Op::Import, &request.resource, key.as_deref());
        found
            .map(|o| ImportResponse {
                attributes: o.attributes,
            })
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::NotFound,
                    "import",
                    &request.resource.address,
                    format!("no object with ID {}", request.id),
                )
            })
    }

    fn concurrency_key(
        &self,
        operation: Operation,
        resource: &ResourceRef,
        attributes: &Attributes,
    ) -> Option<ConcurrencyKey> {
        self.concurrency_key
            .as_ref()
            .and_then(|key| key(operation, resource, attributes))
    }

    fn rollout(
        &self,
        operation: Operation,
        resource: &ResourceRef,
        attributes: &Attributes,
    ) -> Option<Rollout> {
        self.rollout
            .as_ref()
            .and_then(|rollout| rollout(operation, resource, attributes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infraflux_provider::{AttributeSchema, ReadItem};

    fn resource(address: &str) -> ResourceRef {
        ResourceRef {
            address: address.into(),
            kind: "mock_thing".into(),
        }
    }

    fn mock() -> MockProvider {
        MockProvider::new(
            "mock",
            vec![ResourceSchema::new(
                "mock_thing",
                vec![
                    AttributeSchema::input("value"),
                    AttributeSchema::computed("out"),
                ],
            )],
        )
    }

    #[tokio::test]
    async fn create_fills_computed_attributes_and_read_finds_by_id_or_address() {
        let mock = mock();
        let created = mock
            .create(CreateRequest {
                resource: resource("a"),
                planned: json!({"value": 1, "out": infraflux_provider::unknown()})
                    .as_object()
                    .unwrap()
                    .clone(),
                replacing: false,
            })
            .await
            .unwrap();
        assert_eq!(
            created.attributes["out"],
            json!(format!("out-{}", created.id))
        );
        let read = |id: &str| ReadItem {
            resource: resource("a"),
            id: id.into(),
            prior: Attributes::new(),
        };
        let response = mock
            .read(ReadRequest {
                resources: vec![read(&created.id), read(""), read("nope")],
                deep: false,
            })
            .await
            .unwrap();
        assert!(matches!(&response.results[0].outcome, ReadOutcome::Found(a) if a["value"] == 1));
        assert!(
            matches!(&response.results[1].outcome, ReadOutcome::Found(a) if a["id"] == json!(created.id))
        );
        assert!(matches!(response.results[2].outcome, ReadOutcome::Gone));
        assert_eq!(mock.count(Op::Create), 1);
    }

    #[tokio::test]
    async fn injected_failures_fail_and_are_recorded() {
        let mock = mock();
        mock.fail(Op::Create, "a", "boom");
        let error = mock
            .create(CreateRequest {
                resource: resource("a"),
                planned: Attributes::new(),
                replacing: false,
            })
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "create a: boom");
        assert_eq!(
            mock.calls(),
            vec![
                Call::Started(Op::Create, "a".into()),
                Call::Finished(Op::Create, "a".into())
            ]
        );
        assert!(mock.objects().is_empty());
    }

    #[tokio::test]
    async fn the_world_survives_in_its_file() {
        let directory = std::env::temp_dir().join(format!("mock-world-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("world.json");
        let _ = std::fs::remove_file(&path);
        let first = mock().with_world_file(&path);
        first
            .create(CreateRequest {
                resource: resource("a"),
                planned: Attributes::new(),
                replacing: false,
            })
            .await
            .unwrap();
        let second = mock().with_world_file(&path);
        assert_eq!(second.objects(), first.objects());
        let created = second
            .create(CreateRequest {
                resource: resource("b"),
                planned: Attributes::new(),
                replacing: false,
            })
            .await
            .unwrap();
        assert_eq!(created.id, "mock-2");
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
