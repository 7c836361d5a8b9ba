//! The Node gate of a rolled update, against the lab's Kubernetes API served over TLS
//! with the cluster's CA (as a real API server: client certificates checked): the gate
//! waits for the Node to be Ready on the expected kubelet, and a Node that stays on
//! another kubelet fails the step with what it last saw.

mod support;

use std::time::Duration;

use infraflux_lab::kubernetes::FakeApiServer;
use infraflux_talos::node_object::{ClusterApi, node_status, wait_for_node};
use infraflux_talos::secrets::issue_kubernetes_server_certificate;
use serde_json::json;
use support::nodes::secrets;

async fn api_server() -> FakeApiServer {
    let ca = &secrets().kubernetes_ca;
    let server =
        issue_kubernetes_server_certificate(ca, &["127.0.0.1".parse().unwrap()], &["kubernetes"])
            .unwrap();
    FakeApiServer::start_tls(
        "127.0.0.1:0".parse().unwrap(),
        &server.crt,
        &server.key,
        Some(&ca.crt),
    )
    .await
    .unwrap()
}

fn node(ready: bool, kubelet: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "cp-1"},
        "status": {
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "nodeInfo": {"kubeletVersion": kubelet},
        },
    })
}

#[tokio::test]
async fn the_gate_waits_for_the_node_ready_on_the_new_kubelet() {
    let server = api_server().await;
    let api = ClusterApi::as_admin(
        &format!("https://{}", server.address()),
        &secrets().kubernetes_ca,
    )
    .unwrap();
    assert_eq!(node_status(&api, "cp-1").await.unwrap(), None);
    server.insert(node(false, "v1.33.1"));

    let waiting = tokio::spawn({
        let api = ClusterApi::as_admin(
            &format!("https://{}", server.address()),
            &secrets().kubernetes_ca,
        )
        .unwrap();
        async move {
            wait_for_node(
                &api,
                "cp-1",
                Some("v1.34.0"),
                Duration::from_secs(20),
                Duration::from_millis(20),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "not Ready yet: the gate holds");
    server.insert(node(true, "v1.33.1"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "Ready on the old kubelet: the gate holds"
    );
    server.insert(node(true, "v1.34.0"));
    waiting.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_node_left_on_another_kubelet_fails_the_step_with_what_it_saw() {
    let server = api_server().await;
    let api = ClusterApi::as_admin(
        &format!("https://{}", server.address()),
        &secrets().kubernetes_ca,
    )
    .unwrap();
    server.insert(node(true, "v1.33.1"));
    let error = wait_for_node(
        &api,
        "cp-1",
        Some("v1.34.0"),
        Duration::from_millis(300),
        Duration::from_millis(20),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("Node cp-1 to be Ready on kubelet v1.34.0"),
        "{error}"
    );
    assert!(error.contains("Ready, kubelet v1.33.1"), "{error}");
}
