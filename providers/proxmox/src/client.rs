//! The HTTP client: authentication, TLS verification, request counting and retries.
//!
//! Typed endpoints are in [`crate::api`]; this module sends one call and turns the
//! answer into JSON `data` or an [`ApiError`].
//!
//! Secrets (token secret, password, ticket, CSRF token) live in [`Secret`], whose
//! `Debug` prints `***`; they travel in headers only, never in URLs, so neither errors
//! nor logs can show them.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use infraflux_provider::ErrorKind;
use reqwest::Method;
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

use crate::error::ApiError;
use crate::tls;

/// A secret string: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How the client authenticates.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET` on every request.
    ApiToken { token_id: String, secret: Secret },
    /// `POST /access/ticket`, then the `PVEAuthCookie` cookie, and the
    /// `CSRFPreventionToken` header on writes; renewed before PVE's 2 h expiry.
    Password { username: String, password: Secret },
}

impl Credentials {
    /// Parse `USER@REALM!TOKENID=SECRET`. The error never repeats the input.
    pub fn api_token(token: &str) -> Result<Self, SetupError> {
        let (token_id, secret) = token.split_once('=').ok_or(SetupError::MalformedToken)?;
        let (user, token_name) = token_id.split_once('!').ok_or(SetupError::MalformedToken)?;
        if !user.contains('@') || token_name.is_empty() || secret.is_empty() {
            return Err(SetupError::MalformedToken);
        }
        Ok(Credentials::ApiToken {
            token_id: token_id.to_string(),
            secret: Secret::new(secret),
        })
    }

    pub fn password(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials::Password {
            username: username.into(),
            password: Secret::new(password),
        }
    }
}

/// How the server's certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsVerification {
    /// Against the system's trust store.
    System,
    /// Against the CA certificate(s) in this PEM file only.
    CaFile(PathBuf),
    /// The server certificate's SHA-256 fingerprint must be this one (`AB:CD:…` or
    /// plain hex); the name and the chain are not checked.
    Fingerprint(String),
    /// No verification at all. Only for labs.
    Insecure,
}

/// Retries of transient failures: exponential backoff with jitter, bounded attempts.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`: `base · 2^(attempt-1)`, capped, then a
    /// random point in its upper half.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let half = full / 2;
        let span = (full - half).as_millis() as u64;
        half + Duration::from_millis(if span == 0 { 0 } else { random % (span + 1) })
    }
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `https://pve.example:8006` (a trailing `/api2/json` is accepted).
    pub endpoint: Url,
    pub credentials: Credentials,
    pub tls: TlsVerification,
    pub connect_timeout: Duration,
    /// For one HTTP request (tasks are waited for separately, see [`crate::task`]).
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
}

impl ClientConfig {
    pub fn new(endpoint: Url, credentials: Credentials, tls: TlsVerification) -> Self {
        ClientConfig {
            endpoint,
            credentials,
            tls,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("malformed Proxmox API token: expected USER@REALM!TOKENID=SECRET")]
    MalformedToken,
    #[error("malformed certificate fingerprint: expected 32 hex pairs (`AB:CD:…`)")]
    MalformedFingerprint,
    #[error("cannot read the CA file {path}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no usable certificate in the CA file {path}")]
    CaFileContent { path: PathBuf },
    #[error("endpoint `{0}` is not an http(s) URL")]
    Endpoint(String),
    #[error("cannot set up the HTTP client")]
    Http(#[source] reqwest::Error),
    #[error("cannot set up TLS")]
    Tls(#[source] rustls::Error),
}

/// Whether a call may be sent again after a failure whose effect is unknown (a reset
/// or a time-out after the request went out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Reads, config sets, absolute resizes, deletes: sending twice does no harm.
    Idempotent,
    /// Creates and downloads: retried only when PVE certainly did not act (no
    /// connection, or an answer that rejected the call).
    NotIdempotent,
}

/// One API call: method, path below `/api2/json`, query and form parameters.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
    pub idempotency: Idempotency,
}

impl Call {
    /// A call to the path made of `segments`, each percent-encoded (a volume ID's `/`
    /// becomes `%2F`).
    pub fn new(method: Method, segments: &[&str]) -> Self {
        let idempotency = if method == Method::POST {
            Idempotency::NotIdempotent
        } else {
            Idempotency::Idempotent
        };
        Call {
            method,
            path: segments
                .iter()
                .map(|s| format!("/{}", encode_segment(s)))
                .collect(),
            query: Vec::new(),
            form: Vec::new(),
            idempotency,
        }
    }

    pub fn get(segments: &[&str]) -> Self {
        Call::new(Method::GET, segments)
    }

    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    pub fn form(mut self, key: &str, value: impl ToString) -> Self {
        self.form.push((key.to_string(), value.to_string()));
        self
    }

    pub fn idempotent(mut self) -> Self {
        self.idempotency = Idempotency::Idempotent;
        self
    }
}

/// Percent-encode one path segment: unreserved characters and `:@!$'()*+,;=` stay.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:@!$'()*+,;=".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A PVE API client. Cheap to clone; clones share the connection pool, the login
/// ticket and the request counter.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `https://host:8006/api2/json` without a trailing slash.
    base: String,
    credentials: Credentials,
    session: Mutex<Option<Session>>,
    retry: RetryPolicy,
    requests: AtomicU64,
    random: AtomicU64,
}

struct Session {
    ticket: Secret,
    csrf: Secret,
    issued: Instant,
}

/// PVE tickets last 2 hours; log in again well before that.
const TICKET_RENEW_AFTER: Duration = Duration::from_secs(90 * 60);

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

struct Failure {
    error: ApiError,
    /// The request may have reached PVE and been acted on.
    ambiguous: bool,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, SetupError> {
        let endpoint = config.endpoint.as_str().trim_end_matches('/');
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(SetupError::Endpoint(config.endpoint.to_string()));
        }
        let base = if endpoint.ends_with("/api2/json") {
            endpoint.to_string()
        } else {
            format!("{endpoint}/api2/json")
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("infraflux-proxmox/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(32);
        builder = match &config.tls {
            TlsVerification::System => builder,
            TlsVerification::CaFile(path) => {
                let pem = std::fs::read(path).map_err(|source| SetupError::CaFile {
                    path: path.clone(),
                    source,
                })?;
                let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                    .ok()
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| SetupError::CaFileContent { path: path.clone() })?;
                let mut builder = builder.tls_built_in_root_certs(false);
                for certificate in certificates {
                    builder = builder.add_root_certificate(certificate);
                }
                builder
            }
            TlsVerification::Fingerprint(fingerprint) => {
                builder.use_preconfigured_tls(tls::pinned_config(fingerprint)?)
            }
            TlsVerification::Insecure => builder.danger_accept_invalid_certs(true),
        };
        let http = builder.build().map_err(SetupError::Http)?;
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15)
            | 1;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                credentials: config.credentials,
                session: Mutex::new(None),
                retry: config.retry,
                requests: AtomicU64::new(0),
                random: AtomicU64::new(seed),
            }),
        })
    }

    /// `https://host:8006/api2/json`.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// HTTP requests sent so far (logins and retries included).
    pub fn request_count(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    fn random(&self) -> u64 {
        // xorshift64: jitter only, no need for a real generator.
        let mut x = self.inner.random.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.inner.random.store(x, Ordering::Relaxed);
        x
    }

    fn url(&self, call: &Call) -> String {
        let mut url = format!("{}{}", self.inner.base, call.path);
        if !call.query.is_empty() {
            let query: Vec<String> = call
                .query
                .iter()
                .map(|(k, v)| format!("{}={}", encode_segment(k), encode_segment(v)))
                .collect();
            url.push('?');
            url.push_str(&query.join("&"));
        }
        url
    }

    /// Send a call and return PVE's `data`, retrying transient failures.
    pub async fn call(&self, call: Call) -> Result<Value, ApiError> {
        let policy = self.inner.retry;
        let mut attempt = 1;
        loop {
            match self.send_authenticated(&call).await {
                Ok(data) => return Ok(data),
                Err(failure) => {
                    let retry = attempt < policy.max_attempts && worth_retrying(&call, &failure);
                    if !retry {
                        return Err(failure.error);
                    }
                    let delay = policy.delay(attempt, self.random());
                    tracing::debug!(
                        method = %call.method,
                        path = %call.path,
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        error = %failure.error.message,
                        "transient PVE error, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    /// One attempt; with ticket authentication a 401 leads to one fresh login.
    async fn send_authenticated(&self, call: &Call) -> Result<Value, Failure> {
        match self.send_once(call).await {
            Err(failure)
                if failure.error.status == Some(401)
                    && matches!(self.inner.credentials, Credentials::Password { .. }) =>
            {
                *self.inner.session.lock().await = None;
                self.send_once(call).await
            }
            other => other,
        }
    }

    async fn send_once(&self, call: &Call) -> Result<Value, Failure> {
        let url = self.url(call);
        let mut request = self.inner.http.request(call.method.clone(), &url);
        match &self.inner.credentials {
            Credentials::ApiToken { token_id, secret } => {
                request = request.header(
                    reqwest::header::AUTHORIZATION,
                    format!("PVEAPIToken={token_id}={}", secret.expose()),
                );
            }
            Credentials::Password { .. } => {
                let (ticket, csrf) = self.session().await?;
                request = request.header(
                    reqwest::header::COOKIE,
                    format!("PVEAuthCookie={}", ticket.expose()),
                );
                if call.method != Method::GET {
                    request = request.header("CSRFPreventionToken", csrf.expose());
                }
            }
        }
        if !call.form.is_empty() {
            request = request.form(&call.form);
        }
        let answer = self
            .exchange(call.method.as_str(), &url, request, true)
            .await;
        match (answer, &self.inner.credentials) {
            // Name the token PVE refused (its id, never its secret): it may have been
            // deleted or expired since the last call succeeded.
            (Err(mut failure), Credentials::ApiToken { token_id, .. })
                if failure.error.status == Some(401) =>
            {
                failure.error.hint = Some(format!(
                    "PVE refused the API token `{token_id}`: it must exist, not be expired, and have this secret (Datacenter → Permissions → API Tokens, `pveum user token list {}`)",
                    token_id.split('!').next().unwrap_or(token_id)
                ));
                Err(failure)
            }
            (answer, _) => answer,
        }
    }

    /// Send a built request and read its answer.
    async fn exchange(
        &self,
        method: &str,
        url: &str,
        request: reqwest::RequestBuilder,
        keep_body: bool,
    ) -> Result<Value, Failure> {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let response = request.send().await.map_err(|e| Failure {
            ambiguous: !e.is_connect(),
            error: transport_error(method, url, &e),
        })?;
        let status = response.status();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .and_then(|r| std::str::from_utf8(r.as_bytes()).ok())
            .map(str::to_string)
            .or_else(|| status.canonical_reason().map(str::to_string))
            .unwrap_or_default();
        let body = response.text().await.map_err(|e| Failure {
            ambiguous: true,
            error: transport_error(method, url, &e),
        })?;
        if !status.is_success() {
            return Err(Failure {
                ambiguous: false,
                error: ApiError::from_response(
                    method,
                    url,
                    status.as_u16(),
                    &reason,
                    &body,
                    keep_body,
                ),
            });
        }
        let mut parsed: Value = serde_json::from_str(&body).map_err(|_| Failure {
            ambiguous: false,
            error: ApiError::other(
                ErrorKind::Other,
                method,
                url,
                "the answer is not JSON (is the endpoint a PVE API at /api2/json?)",
            ),
        })?;
        Ok(parsed
            .get_mut("data")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }

    /// The login ticket, logging in when there is none or it is old.
    async fn session(&self) -> Result<(Secret, Secret), Failure> {
        let Credentials::Password { username, password } = &self.inner.credentials else {
            unreachable!("session() is only called with password credentials")
        };
        let mut session = self.inner.session.lock().await;
        if let Some(current) = session
            .as_ref()
            .filter(|s| s.issued.elapsed() < TICKET_RENEW_AFTER)
        {
            return Ok((current.ticket.clone(), current.csrf.clone()));
        }
        let url = format!("{}/access/ticket", self.inner.base);
        let form = [
            ("username", username.as_str()),
            ("password", password.expose()),
        ];
        let request = self.inner.http.post(&url).form(&form);
        // The answer holds the ticket: never keep it in an error.
        let data = self.exchange("POST", &url, request, false).await?;
        let field = |name: &str| data.get(name).and_then(Value::as_str).map(Secret::new);
        let (Some(ticket), Some(csrf)) = (field("ticket"), field("CSRFPreventionToken")) else {
            let message = if data.get("NeedTFA").is_some() {
                "the user needs two-factor authentication; use an API token instead"
            } else {
                "the login answer has no ticket"
            };
            return Err(Failure {
                ambiguous: false,
                error: ApiError::other(ErrorKind::Permission, "POST", &url, message),
            });
        };
        *session = Some(Session {
            ticket: ticket.clone(),
            csrf: csrf.clone(),
            issued: Instant::now(),
        });
        Ok((ticket, csrf))
    }
}

/// Whether a failed attempt is sent again (while attempts are left):
/// - a transient failure (no connection, a reset, a time-out, 502–504, 595/596, a lock
///   time-out, no quorum) when the call may be repeated: it is idempotent, or PVE
///   certainly did not act on it (no connection, or an answer that rejected it);
/// - a server error PVE does not explain (a 5xx whose message names nothing known: a
///   crashed worker, a proxy's error page) only for a GET, where reading twice does no
///   harm. Anything else is sent once: a create whose outcome is unknown stays so, and
///   the caller finds out what happened (a VM create is adopted by its description).
fn worth_retrying(call: &Call, failure: &Failure) -> bool {
    match failure.error.kind {
        ErrorKind::Transient => call.idempotency == Idempotency::Idempotent || !failure.ambiguous,
        ErrorKind::Other => {
            call.method == Method::GET && failure.error.status.is_some_and(|s| s >= 500)
        }
        _ => false,
    }
}

/// Whether the error is (or wraps, through nested `io::Error`s, whose `source()`
/// skips what they wrap) a rustls error.
fn is_tls_error(error: &(dyn std::error::Error + 'static)) -> bool {
    if error.is::<rustls::Error>() {
        return true;
    }
    match error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => is_tls_error(inner),
        None => false,
    }
}

/// A transport error (no HTTP answer) as an [`ApiError`]. Certificate problems are not
/// transient: they need the configuration fixed.
fn transport_error(method: &str, url: &str, error: &reqwest::Error) -> ApiError {
    let mut chain = Vec::new();
    let mut tls_problem = false;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if is_tls_error(current) {
            tls_problem = true;
        }
        let text = current.to_string();
        if !chain.iter().any(|t: &String| t.contains(&text)) {
            chain.push(text);
        }
        source = current.source();
    }
    // reqwest's own message repeats the URL; the rest of the chain says what happened.
    let message = chain
        .iter()
        .skip(usize::from(chain.len() > 1))
        .cloned()
        .collect::<Vec<_>>()
        .join(": ");
    let message = if error.is_timeout() {
        format!("request timed out: {message}")
    } else if error.is_connect() {
        format!("cannot connect: {message}")
    } else {
        format!("connection failed: {message}")
    };
    if tls_problem {
        return ApiError::other(ErrorKind::Permission, method, url, message).with_hint(
            "the server's TLS certificate was not accepted: set `proxmox.tls.fingerprint` to the node certificate's SHA-256 fingerprint, or `proxmox.tls.ca_file` to the CA that signed it",
        );
    }
    ApiError::other(ErrorKind::Transient, method, url, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let token = Credentials::api_token("root@pam!ci=0123-secret-4567").unwrap();
        let debug = format!("{token:?}");
        assert!(!debug.contains("0123-secret-4567"), "{debug}");
        assert!(debug.contains("root@pam!ci"));
        let password = Credentials::password("root@pam", "hunter2");
        assert!(!format!("{password:?}").contains("hunter2"));
        let client = Client::new(ClientConfig::new(
            Url::parse("https://127.0.0.1:8006").unwrap(),
            token,
            TlsVerification::Insecure,
        ))
        .unwrap();
        assert!(!format!("{client:?}").contains("0123-secret-4567"));
        assert_eq!(client.base_url(), "https://127.0.0.1:8006/api2/json");
    }

    #[test]
    fn malformed_tokens_are_rejected_without_echo() {
        for bad in ["root@pam=x", "root!ci=x", "root@pam!ci=", "nothing"] {
            let error = Credentials::api_token(bad).unwrap_err().to_string();
            assert!(!error.contains(bad), "{error}");
        }
    }

    #[test]
    fn paths_are_encoded_per_segment() {
        let call = Call::get(&[
            "nodes",
            "pve1",
            "storage",
            "local",
            "content",
            "local:import/a b.raw",
        ]);
        assert_eq!(
            call.path,
            "/nodes/pve1/storage/local/content/local:import%2Fa%20b.raw"
        );
        assert_eq!(
            Call::get(&[
                "nodes",
                "pve1",
                "tasks",
                "UPID:pve1:0000AB:01:02:qmcreate:100:root@pam!ci:",
                "status"
            ])
            .path,
            "/nodes/pve1/tasks/UPID:pve1:0000AB:01:02:qmcreate:100:root@pam!ci:/status"
        );
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for random in [0, 7, u64::MAX] {
            let first = policy.delay(1, random);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let late = policy.delay(10, random);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
        }
    }
}
