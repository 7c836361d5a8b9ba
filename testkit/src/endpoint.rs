//! Raw requests to a Kubernetes API server: the real one of [`crate::control_plane`]
//! (HTTPS, the admin client certificate) or the lab's fake (plain HTTP), through the
//! same calls, so that a test can send both the same sequence and compare the answers.
//!
//! The product talks to clusters through the `kube` client; this is for what a test
//! does in another tool's name (a second field manager, a controller writing status)
//! and for looking at status codes and bodies as they are.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One answer: the status code and the body (JSON, else `Value::Null` and the text).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A `Status` body's `reason` (`NotFound`, `Conflict`, `AlreadyExists`…).
    pub fn reason(&self) -> &str {
        self.body["reason"].as_str().unwrap_or("")
    }

    /// A `Status` body's `message`.
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.text)
    }
}

/// An API server to send requests to.
#[derive(Clone)]
pub struct Endpoint {
    /// `https://127.0.0.1:<port>` or `http://127.0.0.1:<port>`.
    pub url: String,
    client: reqwest::Client,
}

impl Endpoint {
    pub fn new(url: impl Into<String>, client: reqwest::Client) -> Self {
        Endpoint {
            url: url.into(),
            client,
        }
    }

    /// A plain-HTTP server (the lab's fake).
    pub fn plain(url: impl Into<String>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Endpoint::new(url, client)
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Option<String>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.url));
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {}{path}: {e}", self.url));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, body, text }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None, None).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send("DELETE", path, None, None).await
    }

    /// Server-side apply of `body` (JSON is YAML) as `manager`.
    pub async fn apply(&self, path: &str, body: &Value, manager: &str, force: bool) -> Answer {
        self.apply_text(path, &body.to_string(), manager, force, "")
            .await
    }

    /// Server-side apply of a document as it is (YAML or JSON); `query` is appended
    /// (`&dryRun=All`, `&fieldValidation=Strict`).
    pub async fn apply_text(
        &self,
        path: &str,
        body: &str,
        manager: &str,
        force: bool,
        query: &str,
    ) -> Answer {
        let path = format!("{path}?fieldManager={manager}&force={force}{query}");
        self.send(
            "PATCH",
            &path,
            Some("application/apply-patch+yaml"),
            Some(body.to_string()),
        )
        .await
    }

    /// A JSON merge patch as `manager` (what controllers and `kubectl edit` send).
    pub async fn merge_patch(&self, path: &str, body: &Value, manager: &str) -> Answer {
        self.send(
            "PATCH",
            &format!("{path}?fieldManager={manager}"),
            Some("application/merge-patch+json"),
            Some(body.to_string()),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(
            "POST",
            path,
            Some("application/json"),
            Some(body.to_string()),
        )
        .await
    }

    /// GET `path` until `done` says yes (then that object), or `None` after `timeout`.
    pub async fn wait_until(
        &self,
        path: &str,
        timeout: Duration,
        done: impl Fn(&Answer) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.get(path).await;
            if done(&answer) {
                return Some(answer.body);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn group_version_path(api_version: &str) -> String {
    if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    }
}

/// Where an object lives: `/apis/apps/v1/namespaces/dev/deployments/web`.
pub fn object_path(api_version: &str, plural: &str, namespace: Option<&str>, name: &str) -> String {
    let scope = namespace
        .map(|namespace| format!("/namespaces/{namespace}"))
        .unwrap_or_default();
    format!("{}{scope}/{plural}/{name}", group_version_path(api_version))
}

/// The server's resources, looked up by (apiVersion, kind) through discovery.
#[derive(Default)]
pub struct Discovery {
    /// apiVersion → [(kind, plural, namespaced)].
    cache: HashMap<String, Vec<(String, String, bool)>>,
}

impl Discovery {
    /// `(plural, namespaced)` of a kind; asks again for a while when the kind is not
    /// served yet (a new CRD's group can take a moment to appear).
    pub async fn resource(
        &mut self,
        endpoint: &Endpoint,
        api_version: &str,
        kind: &str,
    ) -> Option<(String, bool)> {
        let find = |resources: &Vec<(String, String, bool)>| {
            resources
                .iter()
                .find(|(k, _, _)| k == kind)
                .map(|(_, plural, namespaced)| (plural.clone(), *namespaced))
        };
        if let Some(found) = self.cache.get(api_version).and_then(find) {
            return Some(found);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = endpoint.get(&group_version_path(api_version)).await;
            if answer.is_success() {
                let resources: Vec<(String, String, bool)> = answer.body["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| !r["name"].as_str().unwrap_or("/").contains('/'))
                    .map(|r| {
                        (
                            r["kind"].as_str().unwrap_or("").to_string(),
                            r["name"].as_str().unwrap_or("").to_string(),
                            r["namespaced"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect();
                let found = find(&resources);
                self.cache.insert(api_version.to_string(), resources);
                if found.is_some() {
                    return found;
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The path of `object` (a manifest), or why there is none.
    pub async fn path_of(&mut self, endpoint: &Endpoint, object: &Value) -> Result<String, String> {
        let api_version = object["apiVersion"].as_str().unwrap_or("");
        let kind = object["kind"].as_str().unwrap_or("");
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        let Some((plural, namespaced)) = self.resource(endpoint, api_version, kind).await else {
            return Err(format!("the API server serves no {api_version} {kind}"));
        };
        let namespace = object["metadata"]["namespace"].as_str();
        match (namespaced, namespace) {
            (true, None) => Err(format!(
                "{kind} {name}: namespaced, without metadata.namespace"
            )),
            (true, namespace) => Ok(object_path(api_version, &plural, namespace, name)),
            (false, _) => Ok(object_path(api_version, &plural, None, name)),
        }
    }
}
