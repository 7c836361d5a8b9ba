//! A generated configuration hierarchy for the benches: the example's defaults and
//! templates, environments that each list every cluster, and one file per cluster with
//! its own /24 per environment (no two node ranges overlap).

use std::path::Path;

/// Write `clusters` clusters, each in every one of `environments` (name, template),
/// into `dir`; returns how many files were written.
pub fn generate(dir: &Path, clusters: usize, environments: &[(&str, &str)]) -> usize {
    // 3 environments × 4 second octets (below) leave room for 1,024 clusters each; the
    // fleet benches use one environment and up to 3,000 clusters.
    assert!(
        environments.len() * clusters.div_ceil(256) <= 256,
        "the generator gives each (environment, cluster) its own 10.x.y.0/24"
    );
    let mut files = 0;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for directory in ["defaults", "templates"] {
        std::fs::create_dir_all(dir.join(directory)).unwrap();
        for entry in std::fs::read_dir(example.join(directory)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(directory).join(entry.file_name())).unwrap();
            files += 1;
        }
    }
    // Thousands of VMs on the one Proxmox cluster: the example's 1,000 VM IDs would not
    // hold them (validate says so), so the generated hierarchy widens the range.
    std::fs::write(
        dir.join("defaults").join("vmids.yaml"),
        "proxmox:\n  vmid_range: {start: 1000, end: 99999}\n",
    )
    .unwrap();
    files += 1;
    let names: Vec<String> = (0..clusters).map(|i| format!("cluster-{i:04}")).collect();
    std::fs::create_dir_all(dir.join("environments")).unwrap();
    for (wave, (environment, template)) in environments.iter().enumerate() {
        let mut text = format!("sync_wave: {wave}\ntemplate: {template}\nclusters:\n");
        for name in &names {
            text.push_str(&format!("  - {name}\n"));
        }
        std::fs::write(
            dir.join("environments").join(format!("{environment}.yaml")),
            text,
        )
        .unwrap();
        files += 1;
    }
    std::fs::create_dir_all(dir.join("clusters")).unwrap();
    let octets = clusters.div_ceil(256).max(4);
    for (i, name) in names.iter().enumerate() {
        let mut text = String::from("role: workload\nenvironments:\n");
        for (e, (environment, _)) in environments.iter().enumerate() {
            // 10.<e*octets + i/256>.<i%256>.0/24: distinct for every (environment, cluster).
            let prefix = format!("10.{}.{}", e * octets + i / 256, i % 256);
            text.push_str(&format!(
                "  {environment}:\n    network:\n      nodes:\n        cidr: {prefix}.0/24\n        gateway: {prefix}.1\n        start: {prefix}.10\n      vip: {prefix}.5\n"
            ));
        }
        std::fs::write(dir.join("clusters").join(format!("{name}.yaml")), text).unwrap();
        files += 1;
    }
    files
}
