//! Downloading a release file over HTTP(S), with bounded waits: a network that drops
//! packets must fail the run in seconds, not hang it.

use std::time::Duration;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the whole download may take (the files are about 2 MB).
const TIMEOUT: Duration = Duration::from_secs(120);

/// The body of `url`, or why it could not be had (one line, no secrets: release URLs
/// carry none).
pub async fn get(url: &str) -> Result<Vec<u8>, String> {
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TIMEOUT)
        .user_agent(concat!("infraflux/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let response = client.get(url).send().await.map_err(|e| chain(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the server answered {status}"));
    }
    let body = response.bytes().await.map_err(|e| chain(&e))?;
    Ok(body.to_vec())
}

/// The error and its causes on one line (reqwest's own message is only "error sending
/// request").
fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
