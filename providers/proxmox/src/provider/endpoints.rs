//! [`ProxmoxEndpoints`]: one `proxmox` provider for every PVE cluster a configuration
//! names. Each resource carries its connection (`endpoint`, `token`, `tls`) as
//! attributes; a [`ProxmoxProvider`] (one [`Client`]) is made per connection the first
//! time an operation needs the API, and reused. Validation and planning never connect.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use infraflux_provider::{
    AttributeSchema, Attributes, ConcurrencyKey, CreateRequest, CreateResponse, DeleteRequest,
    Diagnostic, ErrorKind, ImportRequest, ImportResponse, Inventory, InventoryItem,
    InventoryRequest, Operation, PlanRequest, PlanResponse, Provider, ProviderError, ReadItem,
    ReadOutcome, ReadRequest, ReadResponse, ReadResult, ResourceRef, ResourceSchema, Severity,
    UpdateRequest, UpdateResponse, ValidateRequest, ValidateResponse, is_unknown,
};
use serde_json::Value;

use super::storage_slots::{DEFAULT_STORAGE_CONCURRENCY, MAX_STORAGE_CONCURRENCY};
use super::{ProviderOptions, ProxmoxProvider, plan_desired, validate_desired};
use crate::client::{Client, ClientConfig, Credentials, TlsVerification};

/// The PVE API URL, e.g. `https://pve1.example:8006`.
pub const ENDPOINT: &str = "endpoint";
/// `USER@REALM!TOKENID=SECRET`; sensitive.
pub const TOKEN: &str = "token";
/// `"system"`, `"insecure"`, `{"ca_file": PATH}` or `{"fingerprint": "AB:CD:…"}`.
pub const TLS: &str = "tls";
/// Optional: operations that take PVE's storage lock in flight at once per node and
/// storage (the configuration's `proxmox.storage_concurrency`; see
/// [`super::storage_slots`]). A setting of the cluster, not of the resource: a change
/// never plans an update (plan keeps the recorded value) but applies to the whole run.
pub const STORAGE_CONCURRENCY: &str = "storage_concurrency";
const CONNECTION: [&str; 4] = [ENDPOINT, TOKEN, TLS, STORAGE_CONCURRENCY];

/// The `storage_concurrency` of `attributes`: `Ok(None)` when absent or null.
fn storage_concurrency(attributes: &Attributes) -> Result<Option<usize>, String> {
    match attributes.get(STORAGE_CONCURRENCY) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .map(|n| n as usize)
            .filter(|n| (1..=MAX_STORAGE_CONCURRENCY).contains(n))
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "not a whole number from 1 to {MAX_STORAGE_CONCURRENCY} (default {DEFAULT_STORAGE_CONCURRENCY})"
                )
            }),
    }
}

/// One connection, parsed from a resource's attributes.
struct Connection {
    endpoint: url::Url,
    token: String,
    tls: TlsVerification,
    /// Identifies the connection in the cache (never printed).
    key: String,
}

fn parse_tls(value: Option<&Value>) -> Result<TlsVerification, String> {
    match value {
        None | Some(Value::Null) => Ok(TlsVerification::System),
        Some(Value::String(mode)) if mode == "system" => Ok(TlsVerification::System),
        Some(Value::String(mode)) if mode == "insecure" => Ok(TlsVerification::Insecure),
        Some(Value::Object(map)) if map.len() == 1 => {
            match (map.get("ca_file"), map.get("fingerprint")) {
                (Some(Value::String(path)), _) => Ok(TlsVerification::CaFile(PathBuf::from(path))),
                (_, Some(Value::String(fingerprint))) => {
                    Ok(TlsVerification::Fingerprint(fingerprint.clone()))
                }
                _ => Err(TLS_SHAPE.into()),
            }
        }
        Some(_) => Err(TLS_SHAPE.into()),
    }
}

const TLS_SHAPE: &str =
    "use \"system\", \"insecure\", {\"ca_file\": PATH} or {\"fingerprint\": \"AB:CD:…\"}";

/// The connection of `attributes`, or (attribute, problem) pairs. Unknown values are
/// reported as missing unless `allow_unknown`, which skips them.
fn connection(
    attributes: &Attributes,
    allow_unknown: bool,
) -> Result<Option<Connection>, Vec<(&'static str, String)>> {
    let mut problems = Vec::new();
    if [ENDPOINT, TOKEN, TLS]
        .iter()
        .any(|name| attributes.get(*name).is_some_and(is_unknown))
    {
        if allow_unknown {
            return Ok(None);
        }
        return Err(vec![(ENDPOINT, "connection not known".into())]);
    }
    let endpoint = match attributes.get(ENDPOINT).and_then(Value::as_str) {
        Some(text) => match url::Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "https" | "http") => Some(url),
            _ => {
                problems.push((ENDPOINT, "not an http(s) URL".to_string()));
                None
            }
        },
        None => {
            problems.push((ENDPOINT, "missing: set the PVE API URL".to_string()));
            None
        }
    };
    let token = match attributes.get(TOKEN).and_then(Value::as_str) {
        // The message never repeats the token.
        Some(token) if Credentials::api_token(token).is_ok() => Some(token.to_string()),
        Some(_) => {
            problems.push((
                TOKEN,
                "malformed: expected USER@REALM!TOKENID=SECRET".into(),
            ));
            None
        }
        None => {
            problems.push((TOKEN, "missing: set the API token".to_string()));
            None
        }
    };
    let tls = match parse_tls(attributes.get(TLS)) {
        Ok(tls) => Some(tls),
        Err(problem) => {
            problems.push((TLS, problem));
            None
        }
    };
    match (endpoint, token, tls) {
        (Some(endpoint), Some(token), Some(tls)) if problems.is_empty() => {
            let key = format!(
                "{endpoint}\n{token}\n{}",
                attributes
                    .get(TLS)
                    .map(Value::to_string)
                    .unwrap_or_default()
            );
            Ok(Some(Connection {
                endpoint,
                token,
                tls,
                key,
            }))
        }
        _ => Err(problems),
    }
}

fn strip(attributes: &Attributes) -> Attributes {
    let mut inner = attributes.clone();
    for name in CONNECTION {
        inner.remove(name);
    }
    inner
}

/// The connection attributes of `attributes`, taken out of them (as [`strip`] leaves
/// them).
fn take_connection(attributes: &mut Attributes) -> Attributes {
    CONNECTION
        .iter()
        .filter_map(|name| Some((name.to_string(), attributes.remove(*name)?)))
        .collect()
}

/// Copy the connection attributes of `from` onto `to`.
fn restore(to: &mut Attributes, from: &Attributes) {
    for name in CONNECTION {
        if let Some(value) = from.get(name) {
            to.insert(name.to_string(), value.clone());
        }
    }
}

/// The `proxmox` provider over any number of PVE clusters; see the module docs.
pub struct ProxmoxEndpoints {
    options: ProviderOptions,
    providers: Mutex<BTreeMap<String, Arc<ProxmoxProvider>>>,
    /// `storage_concurrency` per connection, as the configuration gave it to `plan`
    /// (resources planned from state carry the value recorded at their create).
    storage_concurrency: Mutex<BTreeMap<String, usize>>,
}

impl ProxmoxEndpoints {
    pub fn new(options: ProviderOptions) -> Self {
        ProxmoxEndpoints {
            options,
            providers: Mutex::new(BTreeMap::new()),
            storage_concurrency: Mutex::new(BTreeMap::new()),
        }
    }

    /// The provider for the connection in `attributes`, made on first use.
    fn provider(
        &self,
        operation: &str,
        address: &str,
        attributes: &Attributes,
    ) -> Result<Arc<ProxmoxProvider>, ProviderError> {
        let connection = match connection(attributes, false) {
            Ok(Some(connection)) => connection,
            Ok(None) => unreachable!("unknowns are refused when not allowed"),
            Err(problems) => {
                let text = problems
                    .iter()
                    .map(|(attribute, problem)| format!("`{attribute}`: {problem}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(ProviderError::new(
                    ErrorKind::InvalidInput,
                    operation,
                    address,
                    text,
                ));
            }
        };
        let limit = self
            .storage_concurrency
            .lock()
            .expect("storage concurrency lock")
            .get(&connection.key)
            .copied()
            .or(storage_concurrency(attributes).ok().flatten());
        let mut providers = self.providers.lock().expect("provider cache lock");
        if let Some(provider) = providers.get(&connection.key) {
            if let Some(limit) = limit {
                provider.set_storage_concurrency(limit);
            }
            return Ok(provider.clone());
        }
        let credentials = Credentials::api_token(&connection.token).map_err(|e| {
            ProviderError::new(ErrorKind::InvalidInput, operation, address, e.to_string())
        })?;
        let client = Client::new(ClientConfig::new(
            connection.endpoint,
            credentials,
            connection.tls,
        ))
        .map_err(|e| {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            ProviderError::new(ErrorKind::InvalidInput, operation, address, message)
        })?;
        let provider = Arc::new(ProxmoxProvider::new(client, self.options.clone()));
        if let Some(limit) = limit {
            provider.set_storage_concurrency(limit);
        }
        providers.insert(connection.key, provider.clone());
        Ok(provider)
    }
}

fn with_connection(mut schema: ResourceSchema) -> ResourceSchema {
    schema.attributes.extend([
        AttributeSchema::input(ENDPOINT),
        AttributeSchema::input(TOKEN).sensitive(),
        AttributeSchema::input(TLS),
        AttributeSchema::input(STORAGE_CONCURRENCY),
    ]);
    schema
}

#[async_trait]
impl Provider for ProxmoxEndpoints {
    fn name(&self) -> &str {
        "proxmox"
    }

    fn schemas(&self) -> Vec<ResourceSchema> {
        vec![
            with_connection(super::image::schema()),
            with_connection(super::vm::schema()),
        ]
    }

    async fn validate(&self, request: ValidateRequest) -> ValidateResponse {
        let mut response = validate_desired(&ValidateRequest {
            resource: request.resource.clone(),
            desired: strip(&request.desired),
        });
        if let Err(problem) = storage_concurrency(&request.desired) {
            response.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                attribute: Some(STORAGE_CONCURRENCY.to_string()),
                summary: problem,
                detail: Some(
                    "operations that take PVE's storage lock (VM create, disk resize, VM delete) run at most this many at once per node and storage".into(),
                ),
            });
        }
        if let Err(problems) = connection(&request.desired, true) {
            response
                .diagnostics
                .extend(problems.into_iter().map(|(attribute, summary)| Diagnostic {
                    severity: Severity::Error,
                    attribute: Some(attribute.to_string()),
                    summary,
                    detail: Some(
                        "each proxmox resource names its PVE API: endpoint, token and tls".into(),
                    ),
                }));
        }
        response
    }

    async fn read(&self, request: ReadRequest) -> Result<ReadResponse, ProviderError> {
        // One batch per connection, so each PVE cluster is listed once.
        let mut batches: BTreeMap<String, (Arc<ProxmoxProvider>, Vec<ReadItem>)> = BTreeMap::new();
        let mut results = Vec::new();
        let mut priors = BTreeMap::new();
        for item in request.resources {
            let key = match connection(&item.prior, false) {
                Ok(Some(connection)) => connection.key,
                _ => String::new(),
            };
            match self.provider("read", &item.resource.address, &item.prior) {
                Ok(provider) => {
                    priors.insert(item.resource.address.clone(), item.prior.clone());
                    let mut inner = item.clone();
                    inner.prior = strip(&item.prior);
                    batches
                        .entry(key)
                        .or_insert_with(|| (provider, Vec::new()))
                        .1
                        .push(inner);
                }
                Err(error) => results.push(ReadResult {
                    address: item.resource.address.clone(),
                    outcome: ReadOutcome::Failed(error),
                }),
            }
        }
        for (_, (provider, resources)) in batches {
            let response = provider
                .read(ReadRequest {
                    resources,
                    deep: request.deep,
                })
                .await?;
            for mut result in response.results {
                if let (ReadOutcome::Found(attributes), Some(prior)) =
                    (&mut result.outcome, priors.get(&result.address))
                {
                    restore(attributes, prior);
                }
                results.push(result);
            }
        }
        Ok(ReadResponse { results })
    }

    async fn plan(&self, request: PlanRequest<'_>) -> Result<PlanResponse, ProviderError> {
        let limit = match (
            connection(&request.desired, false),
            storage_concurrency(&request.desired),
        ) {
            (Ok(Some(connection)), Ok(Some(limit))) => Some((connection.key, limit)),
            _ => None,
        };
        let prior = request.prior.map(strip);
        // The desired attributes are the request's own: the connection is taken out of
        // them, not copied without it (a copy per VM of a fleet).
        let mut desired = request.desired;
        let taken = take_connection(&mut desired);
        let mut response = plan_desired(&PlanRequest {
            resource: request.resource,
            prior: prior.as_ref(),
            desired,
        })?;
        restore(&mut response.planned, &taken);
        // The setting applies to the run, whatever each resource recorded; a changed
        // value is not a change of the resource.
        if let Some((key, limit)) = limit {
            self.storage_concurrency
                .lock()
                .expect("storage concurrency lock")
                .insert(key, limit);
        }
        if let Some(prior) = &request.prior {
            match prior.get(STORAGE_CONCURRENCY) {
                Some(value) => response
                    .planned
                    .insert(STORAGE_CONCURRENCY.into(), value.clone()),
                None => response.planned.remove(STORAGE_CONCURRENCY),
            };
        }
        Ok(response)
    }

    async fn create(&self, request: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let provider = self.provider("create", &request.resource.address, &request.planned)?;
        let mut response = provider
            .create(CreateRequest {
                resource: request.resource.clone(),
                planned: strip(&request.planned),
                replacing: request.replacing,
            })
            .await?;
        restore(&mut response.attributes, &request.planned);
        Ok(response)
    }

    async fn update(&self, request: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let provider = self.provider("update", &request.resource.address, &request.planned)?;
        let mut response = provider
            .update(UpdateRequest {
                resource: request.resource.clone(),
                id: request.id.clone(),
                prior: strip(&request.prior),
                planned: strip(&request.planned),
            })
            .await?;
        restore(&mut response.attributes, &request.planned);
        Ok(response)
    }

    async fn delete(&self, request: DeleteRequest) -> Result<(), ProviderError> {
        let provider = self.provider("delete", &request.resource.address, &request.prior)?;
        provider
            .delete(DeleteRequest {
                resource: request.resource.clone(),
                id: request.id.clone(),
                prior: strip(&request.prior),
                teardown: request.teardown,
            })
            .await
    }

    /// An import names no connection: it goes to the one PVE cluster this run has
    /// connected to, and is refused when there is none or several.
    async fn import(&self, request: ImportRequest) -> Result<ImportResponse, ProviderError> {
        let provider = {
            let providers = self.providers.lock().expect("provider cache lock");
            match providers.values().collect::<Vec<_>>().as_slice() {
                [only] => Arc::clone(only),
                _ => {
                    return Err(ProviderError::new(
                        ErrorKind::InvalidInput,
                        "import",
                        &request.resource.address,
                        "cannot tell which PVE cluster to import from: import into an environment whose configuration names exactly one Proxmox endpoint, after a refresh",
                    ));
                }
            }
        };
        provider.import(request).await
    }

    /// The inventory of the PVE cluster the resources name (the first one's connection:
    /// the engine asks per cluster, and a cluster has one).
    async fn inventory(
        &self,
        request: InventoryRequest,
    ) -> Result<Option<Inventory>, ProviderError> {
        let Some(first) = request.resources.first() else {
            return Ok(None);
        };
        let provider = self.provider("inventory", &first.resource.address, &first.desired)?;
        let items: Vec<InventoryItem> = request
            .resources
            .iter()
            .map(|item| InventoryItem {
                resource: item.resource.clone(),
                desired: strip(&item.desired),
            })
            .collect();
        provider
            .inventory(InventoryRequest { resources: items })
            .await
    }

    fn concurrency_key(
        &self,
        operation: Operation,
        resource: &ResourceRef,
        attributes: &Attributes,
    ) -> Option<ConcurrencyKey> {
        let storage_limit = storage_concurrency(attributes)
            .ok()
            .flatten()
            .unwrap_or(self.options.storage_concurrency);
        let mut key = super::concurrency_key(operation, resource, attributes, storage_limit)?;
        // Storages of different PVE clusters do not share a lock.
        if let Some(endpoint) = attributes.get(ENDPOINT).and_then(Value::as_str) {
            key.key = format!("{}@{endpoint}", key.key);
        }
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attributes(value: Value) -> Attributes {
        value.as_object().unwrap().clone()
    }

    fn resource(kind: &str) -> ResourceRef {
        ResourceRef {
            address: format!("dev/w/{kind}.x"),
            kind: kind.into(),
        }
    }

    fn image() -> Attributes {
        attributes(json!({
            "node": "pve1", "storage": "local", "talos_version": "v1.13.9",
            "schematic": "a".repeat(64), "url": "https://factory.talos.dev/x.raw.xz",
            "filename": "talos.raw",
            "endpoint": "https://pve.example:8006", "token": "root@pam!t=very-secret",
            "tls": {"ca_file": "/nonexistent/ca.pem"},
        }))
    }

    #[tokio::test]
    async fn plans_without_connecting_and_keeps_the_connection() {
        let p = ProxmoxEndpoints::new(ProviderOptions::default());
        let response = p
            .plan(PlanRequest {
                resource: resource(super::super::image::KIND),
                prior: None,
                desired: image(),
            })
            .await
            .unwrap();
        assert_eq!(response.planned["token"], "root@pam!t=very-secret");
        assert_eq!(response.planned["endpoint"], "https://pve.example:8006");
        assert_eq!(
            response.planned["volume"], "local:import/talos.raw",
            "the inner plan ran"
        );
        assert!(p.providers.lock().unwrap().is_empty());
        let schema = &p.schemas()[0];
        assert!(schema.attribute("token").unwrap().sensitive);
    }

    #[tokio::test]
    async fn validate_checks_the_connection_without_repeating_the_token() {
        let p = ProxmoxEndpoints::new(ProviderOptions::default());
        let ok = p
            .validate(ValidateRequest {
                resource: resource(super::super::image::KIND),
                desired: image(),
            })
            .await;
        assert!(ok.diagnostics.is_empty(), "{:?}", ok.diagnostics);
        let mut bad = image();
        bad.insert("token".into(), json!("not-a-token-secretvalue"));
        bad.insert("tls".into(), json!("maybe"));
        let response = p
            .validate(ValidateRequest {
                resource: resource(super::super::image::KIND),
                desired: bad,
            })
            .await;
        let attributes: Vec<_> = response
            .diagnostics
            .iter()
            .map(|d| d.attribute.clone().unwrap())
            .collect();
        assert_eq!(attributes, ["token", "tls"]);
        assert!(!format!("{:?}", response.diagnostics).contains("secretvalue"));
    }

    #[tokio::test]
    async fn an_unreadable_ca_file_fails_the_operation_that_connects() {
        let p = ProxmoxEndpoints::new(ProviderOptions::default());
        let error = p
            .delete(DeleteRequest {
                resource: resource(super::super::image::KIND),
                id: "pve1/local:import/talos.raw".into(),
                prior: image(),
                teardown: false,
            })
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("/nonexistent/ca.pem"), "{text}");
        assert!(!text.contains("very-secret"), "{text}");
    }

    #[tokio::test]
    async fn storage_concurrency_is_checked_and_never_plans_a_change() {
        let p = ProxmoxEndpoints::new(ProviderOptions::default());
        let mut desired = image();
        desired.insert(STORAGE_CONCURRENCY.into(), json!(0));
        let response = p
            .validate(ValidateRequest {
                resource: resource(super::super::image::KIND),
                desired: desired.clone(),
            })
            .await;
        assert_eq!(
            response.diagnostics[0].attribute.as_deref(),
            Some(STORAGE_CONCURRENCY)
        );
        // A resource created before the setting (or with another value) keeps what it
        // recorded: no update is planned for a setting of the cluster.
        desired.insert(STORAGE_CONCURRENCY.into(), json!(2));
        let mut prior = image();
        prior.insert("checksum".into(), Value::Null);
        prior.insert("volume".into(), json!("local:import/talos.raw"));
        let response = p
            .plan(PlanRequest {
                resource: resource(super::super::image::KIND),
                prior: Some(&prior),
                desired: desired.clone(),
            })
            .await
            .unwrap();
        assert_eq!(response.planned, prior);
        // A new one records it, and the run uses it.
        let response = p
            .plan(PlanRequest {
                resource: resource(super::super::image::KIND),
                prior: None,
                desired,
            })
            .await
            .unwrap();
        assert_eq!(response.planned[STORAGE_CONCURRENCY], 2);
        assert_eq!(
            p.storage_concurrency
                .lock()
                .unwrap()
                .values()
                .copied()
                .collect::<Vec<_>>(),
            [2]
        );
    }
}
