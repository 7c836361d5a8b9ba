//! [`KubeApi`] over the `kube` client: a kubeconfig with embedded client certificates
//! (as Talos hands out), server-side apply as `infraflux`, discovery cached per kind and
//! forgotten on [`KubeApi::refresh_discovery`] (after CRDs are installed).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig as KubeconfigFile};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::api::{ApiError, ApplyOptions, FIELD_MANAGER, KubeApi, parse_conflicts};
use crate::object::ObjectRef;

/// A kubeconfig document. It holds a client key: never shown in Debug or Display.
#[derive(Clone, PartialEq, Eq)]
pub struct Kubeconfig(String);

impl Kubeconfig {
    /// Checks that the text parses as a kubeconfig, without saying what is in it (a
    /// parser's message may quote the key).
    pub fn new(text: String) -> Result<Self, String> {
        KubeconfigFile::from_yaml(&text).map_err(|_| {
            "is not a kubeconfig document (details withheld: it holds credentials)".to_string()
        })?;
        Ok(Kubeconfig(text))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kubeconfig(<redacted>)")
    }
}

/// Timeouts for talking to the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }
}

pub struct KubeClient {
    client: kube::Client,
    /// `https://10.0.0.10:6443`, for messages.
    base_url: String,
    kinds: Mutex<HashMap<(String, String), (ApiResource, ApiCapabilities)>>,
}

impl fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl KubeClient {
    /// A client for the current context of a kubeconfig.
    pub async fn new(kubeconfig: &Kubeconfig, options: ClientOptions) -> Result<Self, ApiError> {
        let withheld = |what: &str| {
            ApiError::Invalid(format!(
                "the kubeconfig {what} (details withheld: it holds credentials)"
            ))
        };
        let file = KubeconfigFile::from_yaml(kubeconfig.expose())
            .map_err(|_| withheld("is not a kubeconfig document"))?;
        let mut config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
            .await
            .map_err(|_| {
                withheld("could not be loaded: check current-context, its cluster and its user's embedded certificate and key")
            })?;
        config.connect_timeout = Some(options.connect_timeout);
        config.read_timeout = Some(options.read_timeout);
        config.write_timeout = Some(options.read_timeout);
        let base_url = strip_userinfo(&config.cluster_url.to_string());
        let client = kube::Client::try_from(config)
            .map_err(|error| ApiError::Transport(format!("building the client: {error}")))?;
        Ok(KubeClient {
            client,
            base_url,
            kinds: Mutex::new(HashMap::new()),
        })
    }

    async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, ApiCapabilities), ApiError> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(found) = self.kinds.lock().await.get(&key) {
            return Ok(found.clone());
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let found = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|error| match error {
                kube::Error::Discovery(_) => unknown_kind(api_version, kind),
                kube::Error::Api(response) if response.code == 404 => {
                    unknown_kind(api_version, kind)
                }
                other => self.map_error(other, "GET", &discovery_path(group, version), None),
            })?;
        self.kinds.lock().await.insert(key, found.clone());
        Ok(found)
    }

    async fn api_for(
        &self,
        object: &ObjectRef,
    ) -> Result<(Api<DynamicObject>, ApiResource, String), ApiError> {
        let (resource, capabilities) = self.resolve(&object.api_version, &object.kind).await?;
        let (api, path) = match (&capabilities.scope, &object.namespace) {
            (Scope::Namespaced, Some(namespace)) => (
                Api::namespaced_with(self.client.clone(), namespace, &resource),
                format!(
                    "{}/namespaces/{namespace}/{}/{}",
                    prefix(&resource),
                    resource.plural,
                    object.name
                ),
            ),
            (Scope::Namespaced, None) => {
                return Err(ApiError::Invalid(format!(
                    "{object}: {} is namespaced but the manifest has no namespace",
                    object.kind
                )));
            }
            (Scope::Cluster, _) => (
                Api::all_with(self.client.clone(), &resource),
                format!("{}/{}/{}", prefix(&resource), resource.plural, object.name),
            ),
        };
        Ok((api, resource, path))
    }

    fn map_error(
        &self,
        error: kube::Error,
        method: &str,
        path: &str,
        object: Option<&ObjectRef>,
    ) -> ApiError {
        match error {
            kube::Error::Api(response) => {
                if response.code == 409
                    && let Some(object) = object
                {
                    let conflicts = parse_conflicts(&response.message);
                    if !conflicts.is_empty() {
                        return ApiError::Conflict {
                            object: object.to_string(),
                            conflicts,
                        };
                    }
                }
                ApiError::Status {
                    method: method.to_string(),
                    url: format!("{}{path}", self.base_url.trim_end_matches('/')),
                    status: response.code,
                    reason: response.reason,
                    message: infraflux_provider::ProviderError::truncate_body(&response.message),
                }
            }
            other => ApiError::Transport(format!(
                "{method} {}{path}: {other}",
                self.base_url.trim_end_matches('/')
            )),
        }
    }
}

fn unknown_kind(api_version: &str, kind: &str) -> ApiError {
    ApiError::UnknownKind {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
    }
}

fn discovery_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

fn prefix(resource: &ApiResource) -> String {
    discovery_path(&resource.group, &resource.version)
}

fn strip_userinfo(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

fn to_value(object: DynamicObject, resource: &ApiResource) -> Result<Value, ApiError> {
    let mut value = serde_json::to_value(object)
        .map_err(|error| ApiError::Invalid(format!("object not representable as JSON: {error}")))?;
    // List items come without apiVersion and kind.
    if let Some(map) = value.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| Value::String(resource.api_version.clone()));
        map.entry("kind")
            .or_insert_with(|| Value::String(resource.kind.clone()));
    }
    Ok(value)
}

#[async_trait]
impl KubeApi for KubeClient {
    async fn apply(&self, manifest: &Value, options: ApplyOptions) -> Result<Value, ApiError> {
        let object = ObjectRef::from_manifest(manifest).ok_or_else(|| {
            ApiError::Invalid("manifest without apiVersion, kind or metadata.name".into())
        })?;
        let (api, resource, path) = self.api_for(&object).await?;
        let mut params = PatchParams::apply(FIELD_MANAGER);
        if options.force {
            params = params.force();
        }
        let applied = api
            .patch(&object.name, &params, &Patch::Apply(manifest))
            .await
            .map_err(|error| self.map_error(error, "PATCH", &path, Some(&object)))?;
        to_value(applied, &resource)
    }

    async fn get(&self, object: &ObjectRef) -> Result<Option<Value>, ApiError> {
        let (api, resource, path) = match self.api_for(object).await {
            Ok(found) => found,
            // A kind that is not served has no objects.
            Err(ApiError::UnknownKind { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        match api.get_opt(&object.name).await {
            Ok(Some(found)) => Ok(Some(to_value(found, &resource)?)),
            Ok(None) => Ok(None),
            Err(error) => Err(self.map_error(error, "GET", &path, Some(object))),
        }
    }

    async fn delete(&self, object: &ObjectRef) -> Result<bool, ApiError> {
        let (api, _, path) = match self.api_for(object).await {
            Ok(found) => found,
            Err(ApiError::UnknownKind { .. }) => return Ok(false),
            Err(error) => return Err(error),
        };
        match api.delete(&object.name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(response)) if response.code == 404 => Ok(false),
            Err(error) => Err(self.map_error(error, "DELETE", &path, Some(object))),
        }
    }

    async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<Value>, ApiError> {
        let (resource, capabilities) = match self.resolve(api_version, kind).await {
            Ok(found) => found,
            Err(ApiError::UnknownKind { .. }) => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let api: Api<DynamicObject> = match (&capabilities.scope, namespace) {
            (Scope::Namespaced, Some(namespace)) => {
                Api::namespaced_with(self.client.clone(), namespace, &resource)
            }
            _ => Api::all_with(self.client.clone(), &resource),
        };
        let path = format!("{}/{}", prefix(&resource), resource.plural);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|error| self.map_error(error, "GET", &path, None))?;
        list.items
            .into_iter()
            .map(|item| to_value(item, &resource))
            .collect()
    }

    async fn refresh_discovery(&self) -> Result<(), ApiError> {
        self.kinds.lock().await.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_is_never_shown() {
        let kubeconfig = Kubeconfig::new(
            "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    client-key-data: U0VDUkVU\n"
                .into(),
        )
        .unwrap();
        assert_eq!(format!("{kubeconfig:?}"), "Kubeconfig(<redacted>)");
        let error = Kubeconfig::new("users: [ {client-key-data: U0VDUkVU".into()).unwrap_err();
        assert!(!error.contains("U0VDUkVU"));
    }

    #[test]
    fn urls_in_messages_lose_their_credentials() {
        assert_eq!(
            strip_userinfo("https://admin:secret@10.0.0.10:6443/"),
            "https://10.0.0.10:6443/"
        );
        assert_eq!(
            strip_userinfo("https://10.0.0.10:6443"),
            "https://10.0.0.10:6443"
        );
    }
}
