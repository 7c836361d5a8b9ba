//! ArgoCD is installed from its official release manifest, whole, read offline from a
//! mirror (`--manifests DIR`, here the release files kept beside the repository in
//! `../shared/upstream`) and checked against its pinned sha256:
//!
//! - `bootstrap --render` of the bundled example writes every object of upstream
//!   `install.yaml` for dev (one replica) and of `ha/install.yaml` for staging and prod,
//!   compared by kind and name with the files themselves;
//! - a mirror file with another digest stops the render with both digests and the fix;
//! - with no mirror, no cache and no network, plan says how to provide the file.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use support::{TestContext, upstream};

type Identity = (String, String, String);

/// (apiVersion, kind, name) of every document of a YAML stream.
fn identities_of(text: &str) -> Vec<Identity> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|document| serde_yaml::Value::deserialize(document).unwrap())
        .filter(|document| !document.is_null())
        .map(|document| {
            let text = |v: &serde_yaml::Value| v.as_str().unwrap_or_default().to_string();
            (
                text(&document["apiVersion"]),
                text(&document["kind"]),
                text(&document["metadata"]["name"]),
            )
        })
        .collect()
}

/// `bootstrap --render` of the bundled example, offline from `mirror`; the files written
/// per `environment/cluster`.
fn render(context: &TestContext, out: &Path) -> Vec<PathBuf> {
    let run = context
        .command()
        .args(["bootstrap", "--render"])
        .arg(out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout.lines().map(PathBuf::from).collect()
}

#[test]
fn rendered_argocd_is_every_object_of_the_upstream_release_file() {
    let Some(mirror) = upstream::required_mirror() else {
        return;
    };
    let context = TestContext::with_example()
        // No network and an empty cache: the mirror is the only source.
        .env("INFRAFLUX_MANIFESTS_URL", upstream::UNREACHABLE);
    let out = context.path().join("out");
    let files = render(&context, &out);
    let install = |name: &str| {
        let text = std::fs::read_to_string(mirror.join("argo-cd-v3.5.1").join(name)).unwrap();
        identities_of(&text).into_iter().collect::<BTreeSet<_>>()
    };
    let (single, ha) = (install("install.yaml"), install("ha-install.yaml"));
    assert_eq!((single.len(), ha.len()), (59, 70));

    let mut clusters = BTreeSet::new();
    for environment in ["dev", "staging", "prod"] {
        for cluster in std::fs::read_dir(out.join(environment)).unwrap() {
            let cluster = cluster.unwrap().path();
            let rendered: BTreeSet<Identity> = files
                .iter()
                .filter(|file| file.starts_with(cluster.join("kubernetes")))
                .flat_map(|file| identities_of(&std::fs::read_to_string(file).unwrap()))
                .collect();
            let expected = if environment == "dev" { &single } else { &ha };
            let missing: Vec<&Identity> = expected.difference(&rendered).collect();
            assert!(
                missing.is_empty(),
                "{}: missing {missing:?}",
                cluster.display()
            );
            // The other variant's own objects are not there (redis-ha only in HA).
            let other = if environment == "dev" { &ha } else { &single };
            let extra: Vec<&Identity> = other
                .difference(expected)
                .filter(|identity| rendered.contains(*identity))
                .collect();
            assert!(extra.is_empty(), "{}: also {extra:?}", cluster.display());
            clusters.insert(format!(
                "{environment}/{}",
                cluster.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert_eq!(
        clusters.into_iter().collect::<Vec<_>>(),
        [
            "dev/workload",
            "prod/edge",
            "prod/management",
            "prod/workload",
            "staging/workload"
        ]
    );
    // Nothing was downloaded or cached.
    assert!(!context.path().join(".cache").exists());
}

#[test]
fn a_release_file_with_another_digest_stops_the_render_with_both_digests_and_the_fix() {
    let Some(mirror) = upstream::required_mirror() else {
        return;
    };
    let context = TestContext::with_example();
    let altered = context.path().join("mirror/argo-cd-v3.5.1/install.yaml");
    std::fs::create_dir_all(altered.parent().unwrap()).unwrap();
    let mut bytes = std::fs::read(mirror.join("argo-cd-v3.5.1/install.yaml")).unwrap();
    bytes.extend_from_slice(b"# one line more\n");
    std::fs::write(&altered, &bytes).unwrap();
    let run = context
        .command()
        .arg("--manifests")
        .arg(context.path().join("mirror"))
        .args(["bootstrap", "--render", "out", "--env", "dev"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    let found = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let expected = "795a3a972224da6a7f9d32c3e946445f062b60fb46028476715affeb688236e3";
    let _filters = context.filters();
    insta::assert_snapshot!(
        "digest_mismatch",
        stderr
            .replace(&found, "<sha256 of the altered file>")
            .replace(expected, "<pinned sha256>")
    );
    // Cilium, rendered before ArgoCD, is written; nothing of ArgoCD is.
    let written: Vec<String> =
        std::fs::read_dir(context.path().join("out/dev/workload/kubernetes"))
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    assert!(!written.is_empty());
    assert!(written.iter().all(|f| !f.contains("argocd")), "{written:?}");
}

#[test]
fn without_mirror_cache_or_network_plan_says_how_to_provide_the_file() {
    let context = TestContext::with_example()
        .env_remove("INFRAFLUX_MANIFESTS")
        .env("INFRAFLUX_MANIFESTS_URL", upstream::UNREACHABLE);
    let run = context.run(&["plan", "--env", "dev", "--refresh=false"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr
            .contains("argo-cd v3.5.1 install.yaml is not available: it is not in the cache"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("downloading http://127.0.0.1:9/argo-cd-v3.5.1/install.yaml failed"),
        "{run}"
    );
    assert!(
        run.stderr.contains(
            "pass an offline mirror with --manifests DIR (or INFRAFLUX_MANIFESTS) holding argo-cd-v3.5.1/install.yaml"
        ),
        "{run}"
    );
}
