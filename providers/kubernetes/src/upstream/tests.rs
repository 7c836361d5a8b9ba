//! Release files from the mirror, the cache and a server on loopback (wiremock serving
//! the shared upstream files), each checked against its digest.

use super::testing::shared_mirror;
use super::*;

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn install() -> &'static ReleaseFile {
    argocd("v3.5.1", false).unwrap()
}

fn ha_install() -> &'static ReleaseFile {
    argocd("3.5.1", true).unwrap()
}

/// A mirror folder holding `bytes` as `file`.
fn mirror_with(file: &ReleaseFile, bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file.relative_path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    dir
}

/// A server laid out like the mirror, serving `bytes` as `file` (and 404 otherwise).
async fn server_with(file: &ReleaseFile, bytes: Vec<u8>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/{}", file.relative_path())))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(bytes))
        .mount(&server)
        .await;
    server
}

fn documents_of(loaded: Loaded) -> Arc<Vec<Value>> {
    match loaded {
        Loaded::Upstream(documents) => documents,
        Loaded::Simulated { reason } => panic!("simulated: {reason}"),
    }
}

#[test]
fn only_pinned_argocd_releases_are_known() {
    assert_eq!(install().name, "install.yaml");
    assert_eq!(ha_install().name, "ha-install.yaml");
    assert!(
        ha_install()
            .url
            .ends_with("/v3.5.1/manifests/ha/install.yaml")
    );
    assert_eq!(
        ha_install().relative_path(),
        "argo-cd-v3.5.1/ha-install.yaml"
    );
    assert_eq!(argocd("v3.4.0", false), None);
    assert_eq!(argocd_versions(), ["v3.5.1"]);
}

#[test]
fn the_cache_follows_xdg() {
    assert_eq!(
        default_cache(Some("/xdg".into()), Some("/home/u".into())),
        Some(PathBuf::from("/xdg/infraflux/manifests"))
    );
    // A relative XDG_CACHE_HOME is ignored, as the specification says.
    assert_eq!(
        default_cache(Some("rel".into()), Some("/home/u".into())),
        Some(PathBuf::from("/home/u/.cache/infraflux/manifests"))
    );
    assert_eq!(default_cache(None, None), None);
}

#[tokio::test]
async fn the_mirror_gives_the_release_files_as_they_are() {
    let Some(mirror) = shared_mirror() else {
        return;
    };
    let sources = Sources {
        mirror: Some(mirror),
        ..Default::default()
    };
    let install = documents_of(sources.load(install()).await.unwrap());
    let ha = documents_of(sources.load(ha_install()).await.unwrap());
    assert_eq!((install.len(), ha.len()), (59, 70));
}

#[tokio::test]
async fn a_mirror_file_with_another_digest_is_refused_with_both_digests_and_the_fix() {
    let file = install();
    let mirror = mirror_with(file, b"apiVersion: v1\nkind: ConfigMap\n");
    let sources = Sources {
        mirror: Some(mirror.path().to_path_buf()),
        ..Default::default()
    };
    let error = sources.load(file).await.unwrap_err();
    let found = sha256(b"apiVersion: v1\nkind: ConfigMap\n");
    let path = mirror.path().join("argo-cd-v3.5.1/install.yaml");
    assert_eq!(
        error.to_string(),
        format!(
            "argo-cd v3.5.1 install.yaml from {} has sha256 {found}, but InfraFlux pins {}",
            path.display(),
            file.sha256
        )
    );
    assert_eq!(
        error.help(),
        format!(
            "replace {} with the official file {} (its sha256 is {}), or leave --manifests unset to download it",
            path.display(),
            file.url,
            file.sha256
        )
    );
}

#[tokio::test]
async fn a_mirror_without_the_file_is_an_error_not_a_download() {
    let mirror = tempfile::tempdir().unwrap();
    let server = server_with(install(), b"never asked".to_vec()).await;
    let sources = Sources {
        mirror: Some(mirror.path().to_path_buf()),
        base_url: Some(server.uri()),
        ..Default::default()
    };
    let error = sources.load(install()).await.unwrap_err();
    assert!(matches!(error, Error::NotInMirror { .. }), "{error}");
    assert!(error.help().contains("argo-cd-v3.5.1/install.yaml"));
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_download_is_checked_cached_and_read_offline_afterwards() {
    let Some(mirror) = shared_mirror() else {
        return;
    };
    let file = ha_install();
    let bytes = std::fs::read(mirror.join(file.relative_path())).unwrap();
    let server = server_with(file, bytes.clone()).await;
    let cache = tempfile::tempdir().unwrap();
    let online = Sources {
        cache: Some(cache.path().to_path_buf()),
        base_url: Some(server.uri()),
        ..Default::default()
    };
    assert_eq!(documents_of(online.load(file).await.unwrap()).len(), 70);
    let cached = cache.path().join("argo-cd-v3.5.1/ha-install.yaml");
    assert_eq!(std::fs::read(&cached).unwrap(), bytes);

    // Offline now: the cache answers, and the server is not asked again.
    drop(server);
    let offline = Sources {
        base_url: Some("http://127.0.0.1:9".into()),
        ..online.clone()
    };
    assert_eq!(documents_of(offline.load(file).await.unwrap()).len(), 70);

    // A damaged cache is not trusted: it is thrown away and, offline, the file is
    // unavailable.
    std::fs::write(&cached, b"damaged").unwrap();
    let error = offline.load(file).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error}");
    assert!(!cached.exists());
}

#[tokio::test]
async fn a_download_with_another_digest_names_the_url_both_digests_and_the_fix() {
    let file = install();
    let server = server_with(file, b"kind: Tampered\n".to_vec()).await;
    let cache = tempfile::tempdir().unwrap();
    let sources = Sources {
        cache: Some(cache.path().to_path_buf()),
        base_url: Some(format!("{}/", server.uri())),
        ..Default::default()
    };
    let error = sources.load(file).await.unwrap_err();
    let url = format!("{}/argo-cd-v3.5.1/install.yaml", server.uri());
    assert_eq!(
        error.to_string(),
        format!(
            "argo-cd v3.5.1 install.yaml from {url} has sha256 {}, but InfraFlux pins {}",
            sha256(b"kind: Tampered\n"),
            file.sha256
        )
    );
    assert!(error.help().contains("--manifests DIR"), "{}", error.help());
    // Nothing unchecked is cached.
    assert!(!cache.path().join(file.relative_path()).exists());
}

#[tokio::test]
async fn without_any_source_the_error_says_how_to_provide_the_file() {
    let server = MockServer::start().await;
    let sources = Sources {
        base_url: Some(server.uri()),
        ..Default::default()
    };
    let error = sources.load(install()).await.unwrap_err();
    assert!(
        error.to_string().contains("downloading http://127.0.0.1:"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .ends_with("the server answered 404 Not Found"),
        "{error}"
    );
    assert_eq!(
        error.help(),
        format!(
            "allow HTTPS to raw.githubusercontent.com once (the file is then cached), or pass an offline mirror with --manifests DIR (or INFRAFLUX_MANIFESTS) holding argo-cd-v3.5.1/install.yaml (sha256 {})",
            install().sha256
        )
    );

    // The lab may simulate instead, and says why.
    let simulate = Sources {
        when_unavailable: WhenUnavailable::Simulate,
        ..sources
    };
    match simulate.load(install()).await.unwrap() {
        Loaded::Simulated { reason } => assert!(reason.contains("404"), "{reason}"),
        Loaded::Upstream(_) => panic!("nothing served the file"),
    }
}

/// Callers that ask for the same file at once (a plan on several threads) share one
/// download: when it fails, every one of them gets its error, and the server is asked
/// once. A caller that asks afterwards tries again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_waiting_for_a_failing_download_share_it() {
    let server = MockServer::start().await;
    // Slow enough that every caller is waiting before the first answer.
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_delay(std::time::Duration::from_millis(300)))
        .mount(&server)
        .await;
    let sources = Sources {
        base_url: Some(server.uri()),
        ..Default::default()
    };
    let file = ha_install();
    let loads: Vec<_> = (0..4)
        .map(|_| {
            let sources = sources.clone();
            tokio::spawn(async move { sources.load(file).await })
        })
        .collect();
    for load in loads {
        let error = load.await.unwrap().unwrap_err();
        assert!(error.to_string().contains("503"), "{error}");
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    let error = sources.load(file).await.unwrap_err();
    assert!(matches!(error, Error::Unavailable { .. }), "{error}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}
