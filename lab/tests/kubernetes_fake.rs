//! The lab's fake API server through the provider's own `kube` client, with no real
//! counterpart needed: kinds of CRDs served only once the lab establishes them,
//! apply/get/list/delete, generations, conflicts, and TLS with client certificates.
//! Whether its answers are a real API server's is tests/kubernetes_differential.rs's job.

use std::time::Duration;

use serde_json::{Value, json};

use infraflux_kubernetes::api::{ApiError, ApplyOptions, KubeApi};
use infraflux_kubernetes::client::{ClientOptions, KubeClient, Kubeconfig};
use infraflux_kubernetes::object::ObjectRef;
use infraflux_lab::kubernetes::FakeApiServer;

async fn client(server: &FakeApiServer) -> KubeClient {
    KubeClient::new(
        &Kubeconfig::new(server.kubeconfig()).unwrap(),
        ClientOptions::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn crds_register_kinds_at_run_time_and_discovery_is_refreshed() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client(&server).await;
    let application = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "a", "namespace": "default"}, "spec": {"project": "default"}});
    let error = client
        .apply(&application, ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, ApiError::UnknownKind { .. }), "{error}");
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "applications.argoproj.io"},
        "spec": {"group": "argoproj.io", "scope": "Namespaced",
            "names": {"kind": "Application", "plural": "applications"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true}]}});
    client.apply(&crd, ApplyOptions::default()).await.unwrap();
    // Not served until Established.
    assert!(
        client
            .apply(&application, ApplyOptions::default())
            .await
            .is_err()
    );
    assert!(server.establish("applications.argoproj.io"));
    client.refresh_discovery().await.unwrap();
    let stored = client
        .apply(&application, ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(stored["metadata"]["generation"], 1);
    let listed = client
        .list("argoproj.io/v1alpha1", "Application", Some("default"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["kind"], "Application");
    let object = ObjectRef::new("argoproj.io/v1alpha1", "Application", Some("default"), "a");
    assert!(client.delete(&object).await.unwrap());
    assert!(!client.delete(&object).await.unwrap());
    assert!(client.get(&object).await.unwrap().is_none());
}

#[tokio::test]
async fn generation_moves_with_the_spec_and_namespaces_must_exist() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client(&server).await;
    let deployment = |replicas: i64| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"a": "b"}},
            "spec": {"replicas": replicas}})
    };
    let first = client
        .apply(&deployment(1), ApplyOptions::default())
        .await
        .unwrap();
    let same = client
        .apply(&deployment(1), ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(
        first["metadata"]["generation"],
        same["metadata"]["generation"]
    );
    assert_eq!(
        first["metadata"]["resourceVersion"],
        same["metadata"]["resourceVersion"]
    );
    let scaled = client
        .apply(&deployment(2), ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(scaled["metadata"]["generation"], 2);
    let mut missing = deployment(1);
    missing["metadata"]["namespace"] = json!("nowhere");
    let error = client
        .apply(&missing, ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("namespaces \"nowhere\" not found"),
        "{error}"
    );
}

#[tokio::test]
async fn conflicts_name_the_field_and_the_other_manager() {
    let server = FakeApiServer::start().await.unwrap();
    let client = client(&server).await;
    // Another tool owns .data.mode.
    let config = |mode: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "default"}, "data": {"mode": mode}})
    };
    let stored = client
        .apply(&config("a"), ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(stored["data"]["mode"], "a");
    // helm (raw requests under its own field manager) cannot take the field without
    // forcing; forced, it becomes the owner.
    assert_eq!(raw_apply(&server, "helm", false, &config("b")).await, 409);
    assert_eq!(raw_apply(&server, "helm", true, &config("b")).await, 200);
    let error = client
        .apply(&config("c"), ApplyOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "ConfigMap default/settings: conflicts with other field managers: .data.mode (owned by helm)"
    );
    let forced = client
        .apply(&config("c"), ApplyOptions { force: true })
        .await
        .unwrap();
    assert_eq!(forced["data"]["mode"], "c");
    assert_eq!(
        client
            .get(&ObjectRef::new(
                "v1",
                "ConfigMap",
                Some("default"),
                "settings"
            ))
            .await
            .unwrap()
            .unwrap()["data"]["mode"],
        "c"
    );
}

async fn raw_apply(server: &FakeApiServer, manager: &str, force: bool, body: &Value) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.url().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let body = body.to_string();
    let request = format!(
        "PATCH /api/v1/namespaces/default/configmaps/settings?fieldManager={manager}&force={force} HTTP/1.1\r\n\
         Host: {address}\r\nContent-Type: application/apply-patch+yaml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    response[9..12].parse().unwrap()
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all PEM.
fn tls_material() -> (String, (String, String), (String, String)) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::from_ca_cert_pem(&ca, ca_key).unwrap();
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let certificate = params.signed_by(&key, &issuer).unwrap();
        (certificate.pem(), key.serialize_pem())
    };
    let server = leaf(
        vec!["127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let client = leaf(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
    (ca, server, client)
}

fn tls_kubeconfig(server: &FakeApiServer, ca: &str, client: Option<&(String, String)>) -> String {
    use base64::Engine as _;
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let user = match client {
        Some((crt, key)) => {
            json!({"client-certificate-data": encode(crt), "client-key-data": encode(key)})
        }
        None => json!({"token": "no-certificate"}),
    };
    serde_json::to_string(&json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {
            "server": format!("https://{}", server.address()),
            "certificate-authority-data": encode(ca)}}],
        "users": [{"name": "admin", "user": user}],
        "contexts": [{"name": "admin", "context": {"cluster": "lab", "user": "admin"}}],
        "current-context": "admin",
    }))
    .unwrap()
}

#[tokio::test]
async fn tls_serves_clients_with_a_certificate_from_the_ca_and_refuses_others() {
    let (ca, (server_crt, server_key), client) = tls_material();
    let server = FakeApiServer::start_tls(
        "127.0.0.1:0".parse().unwrap(),
        &server_crt,
        &server_key,
        Some(&ca),
    )
    .await
    .unwrap();
    let admin = KubeClient::new(
        &Kubeconfig::new(tls_kubeconfig(&server, &ca, Some(&client))).unwrap(),
        ClientOptions::default(),
    )
    .await
    .unwrap();
    let namespaces = admin.list("v1", "Namespace", None).await.unwrap();
    assert!(
        namespaces
            .iter()
            .any(|n| n["metadata"]["name"] == "kube-system")
    );
    // Without a client certificate the handshake fails: nothing is served.
    let anonymous = KubeClient::new(
        &Kubeconfig::new(tls_kubeconfig(&server, &ca, None)).unwrap(),
        ClientOptions::default(),
    )
    .await;
    let refused = match anonymous {
        Err(_) => true,
        Ok(client) => client.list("v1", "Namespace", None).await.is_err(),
    };
    assert!(refused);
    assert!(
        FakeApiServer::start_tls(
            "10.0.0.1:6443".parse().unwrap(),
            &server_crt,
            &server_key,
            None
        )
        .await
        .is_err()
    );
}
