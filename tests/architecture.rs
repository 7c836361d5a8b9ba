//! The module graph stays a hierarchy (docs: CONVENTIONS "The pipeline is the architecture").
//!
//! 1. No import cycle between the top-level modules of `src/`. Every `src/**/*.rs` file
//!    is read as text; comments, string literals and test code (`tests.rs` files and
//!    `#[cfg(test)]` items: a test may drive several stages end to end) are removed; each
//!    `crate::<module>`, each name in `use crate::{…}` and each `super::` that climbs to the
//!    crate root is an edge from the file's top-level module to the one named. The modules
//!    on top ([`ON_TOP`]: the binary, the CLI, the commands, the operation layer, the lab
//!    and the test support) may import anything and nothing below may import them; the
//!    rest must form no cycle, which the failure prints with the files behind each edge.
//! 2. Providers never depend on the engine or on each other: the normal dependencies of
//!    `providers/*/Cargo.toml` name neither the main crate nor another provider crate, only
//!    the contract crate `infraflux-provider`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that may import every other one; nothing else may import them.
const ON_TOP: &[&str] = &["cli", "commands", "lab", "main", "operation", "testing"];

/// The contract crate every provider implements.
const CONTRACT: &str = "infraflux-provider";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The module path of a file under `src/`: `graph/placement/tests.rs` → graph, placement,
/// tests; `graph/mod.rs` → graph; `lib.rs` → (the root).
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().unwrap();
    let stem = file.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib") {
        parts.push(stem.to_string());
    }
    parts
}

/// `text` without comments, string and character literals (their contents become spaces,
/// so braces inside them do not count).
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !is_ident(out.chars().last())
        {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            let closing: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let rest: String = chars[j..].iter().collect();
            let end = rest.find(&closing).map_or(chars.len(), |at| {
                j + rest[..at].chars().count() + closing.chars().count()
            });
            out.push_str("\"\"");
            i = end;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('x', '\n', '\''), not a lifetime ('a).
            let literal = match (next, chars.get(i + 2), chars.get(i + 3)) {
                (Some('\\'), _, _) => chars[i + 2..]
                    .iter()
                    .position(|&c| c == '\'')
                    .map(|p| i + 3 + p),
                (Some(_), Some('\''), _) => Some(i + 3),
                _ => None,
            };
            match literal {
                Some(end) => {
                    out.push_str("' '");
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// `code` (already [`strip`]ped) without `#[cfg(test)]` items.
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        // The item ends at its `;` or at the brace that closes its first `{`.
        let semicolon = item.find(';');
        let brace = item.find('{');
        let end = match (semicolon, brace) {
            (Some(s), Some(b)) if s < b => s + 1,
            (_, Some(b)) => {
                let mut depth = 0;
                let mut end = item.len();
                for (offset, c) in item[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + offset + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (Some(s), None) => s + 1,
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

fn identifier_at(code: &str) -> &str {
    let end = code
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(code.len());
    &code[..end]
}

/// The crate-level modules `code` (stripped, from the file at `module`) refers to.
fn references(code: &str, module: &[String]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while let Some(offset) = code[at..].find("crate::") {
        let start = at + offset;
        at = start + "crate::".len();
        if start > 0 && (is_ident(code[..start].chars().last()) || bytes[start - 1] == b'$') {
            continue;
        }
        let rest = code[at..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // use crate::{a, b::c, d::{e, f}}: the names at depth 0.
            let mut depth = 0;
            let mut expect_name = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => expect_name = true,
                    c if c.is_whitespace() => {}
                    _ if expect_name && depth == 0 => {
                        found.insert(identifier_at(&group[i..]).to_string());
                        expect_name = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(identifier_at(rest).to_string());
        }
    }
    // super:: chains that climb to the crate root.
    let mut at = 0;
    while let Some(offset) = code[at..].find("super::") {
        let start = at + offset;
        if start > 0 && is_ident(code[..start].chars().last()) {
            at = start + 1;
            continue;
        }
        let mut levels = 0;
        let mut rest = &code[start..];
        while let Some(after) = rest.strip_prefix("super::") {
            levels += 1;
            rest = after.trim_start();
        }
        at = code.len() - rest.len();
        if levels >= module.len() {
            found.insert(identifier_at(rest).to_string());
        }
    }
    found
}

/// Per top-level module, the top-level modules it imports, with the files that do.
type Edges = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn module_graph(src: &Path) -> (BTreeSet<String>, Edges) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_path(f.strip_prefix(src).unwrap()).first().cloned())
        .collect();
    let mut edges = Edges::new();
    for file in &files {
        let relative = file.strip_prefix(src).unwrap();
        let module = module_path(relative);
        let Some(top) = module.first() else {
            continue; // lib.rs: declares the modules
        };
        if module.iter().any(|part| part == "tests") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let code = without_tests(&strip(&text));
        for target in references(&code, &module) {
            if &target != top && modules.contains(&target) {
                edges
                    .entry(top.clone())
                    .or_default()
                    .entry(target)
                    .or_default()
                    .insert(format!("src/{}", relative.display()));
            }
        }
    }
    (modules, edges)
}

/// A cycle through `start` among `edges`, if there is one: the modules in order.
fn cycle_through(start: &str, edges: &BTreeMap<&str, BTreeSet<&str>>) -> Option<Vec<String>> {
    fn walk<'a>(
        node: &'a str,
        start: &str,
        edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        seen: &mut BTreeSet<&'a str>,
    ) -> bool {
        for &next in edges.get(node).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next) {
                path.push(next);
                if walk(next, start, edges, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let start = edges.keys().find(|k| **k == start)?;
    let mut path = vec![*start];
    let mut seen = BTreeSet::from([*start]);
    walk(start, start, edges, &mut path, &mut seen)
        .then(|| path.into_iter().map(String::from).collect())
}

/// Every violation of rule 1, described.
fn violations(edges: &Edges) -> Vec<String> {
    let mut problems = Vec::new();
    let below: BTreeMap<&str, BTreeSet<&str>> = edges
        .iter()
        .filter(|(from, _)| !ON_TOP.contains(&from.as_str()))
        .map(|(from, to)| (from.as_str(), to.keys().map(String::as_str).collect()))
        .collect();
    for (from, targets) in &below {
        for target in targets.iter().filter(|t| ON_TOP.contains(t)) {
            problems.push(format!(
                "`{from}` imports `{target}`, which is on top (in {})",
                files(edges, from, target)
            ));
        }
    }
    let below: BTreeMap<&str, BTreeSet<&str>> = below
        .into_iter()
        .map(|(from, to)| {
            (
                from,
                to.into_iter().filter(|t| !ON_TOP.contains(t)).collect(),
            )
        })
        .collect();
    let mut reported: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    for start in below.keys() {
        let Some(cycle) = cycle_through(start, &below) else {
            continue;
        };
        if !reported.insert(cycle.iter().cloned().collect()) {
            continue;
        }
        let mut text = format!("import cycle: {} → {}", cycle.join(" → "), cycle[0]);
        for (i, from) in cycle.iter().enumerate() {
            let to = &cycle[(i + 1) % cycle.len()];
            text.push_str(&format!("\n  {from} → {to}: {}", files(edges, from, to)));
        }
        problems.push(text);
    }
    problems
}

fn files(edges: &Edges, from: &str, to: &str) -> String {
    edges[from][to]
        .iter()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn top_level_modules_form_no_cycle() {
    let (modules, edges) = module_graph(&root().join("src"));
    for module in ["config", "model", "graph", "plan", "state", "vocabulary"] {
        assert!(
            modules.contains(module),
            "no module `{module}` found: {modules:?}"
        );
    }
    let problems = violations(&edges);
    let graph: Vec<String> = edges
        .iter()
        .map(|(from, to)| {
            format!(
                "  {from} → {}",
                to.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        problems.is_empty(),
        "{}\n\nthe module graph:\n{}\nhelp: move what both sides share into `vocabulary` (it imports nothing from the crate), or pass it in as plain data",
        problems.join("\n"),
        graph.join("\n")
    );
    // The leaves stay leaves.
    for leaf in ["vocabulary", "diag"] {
        assert!(
            !edges.contains_key(leaf),
            "`{leaf}` imports {:?}",
            edges[leaf]
        );
    }
}

#[test]
fn the_check_finds_references_and_cycles() {
    let module = vec!["graph".to_string(), "placement".to_string()];
    let code = without_tests(&strip(
        r##"
        // crate::commented
        /* crate::block */
        use crate::vocabulary::ResourceAddr;
        use crate::{model::{Cluster, Model}, state, diag::Problem};
        use super::super::registry::ProviderRegistry;
        use super::DesiredResource;
        const TEXT: &str = "crate::quoted";
        const RAW: &str = r#"crate::raw"#;
        fn f() { let _ = crate::plan::plan; let _ = '{'; macro_rules! m { () => { $crate::ignored } } }
        #[cfg(test)]
        mod tests { use crate::testing::Rig; fn g() { if true { crate::apply::apply(); } } }
        fn after() { crate::policy::check(); }
        "##,
    ));
    let expected: BTreeSet<String> = [
        "diag",
        "model",
        "plan",
        "policy",
        "registry",
        "state",
        "vocabulary",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(references(&code, &module), expected);

    let mut edges = Edges::new();
    for (from, to) in [
        ("model", "config"),
        ("config", "state"),
        ("state", "model"),
        ("plan", "commands"),
    ] {
        edges
            .entry(from.into())
            .or_default()
            .insert(to.into(), BTreeSet::from([format!("src/{from}/mod.rs")]));
    }
    let problems = violations(&edges);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].contains("`plan` imports `commands`"),
        "{}",
        problems[0]
    );
    assert!(
        problems[1].starts_with("import cycle: config → state → model → config"),
        "{}",
        problems[1]
    );
}

/// The dependency names of the normal `[dependencies]` tables of a Cargo.toml (package
/// renames resolved), without a TOML parser: one `name = …` or `name.key = …` per line.
fn normal_dependencies(manifest: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut section = String::new();
    let mut table_dependency: Option<String> = None;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.starts_with('[') {
            section = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            // [dependencies.name] / [target.'cfg(…)'.dependencies.name]
            table_dependency = section
                .split_once("dependencies.")
                .filter(|(before, _)| before.is_empty() || before.ends_with('.'))
                .filter(|(before, _)| !before.ends_with("dev-") && !before.ends_with("build-"))
                .map(|(_, name)| name.trim_matches('"').to_string());
            if let Some(name) = &table_dependency {
                names.insert(name.clone());
            }
            continue;
        }
        let normal = section == "dependencies"
            || (section.starts_with("target.") && section.ends_with(".dependencies"));
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if let Some(name) = &table_dependency {
            if key == "package" {
                names.remove(name);
                names.insert(value.trim().trim_matches('"').to_string());
            }
            continue;
        }
        if !normal {
            continue;
        }
        let name = key
            .split('.')
            .next()
            .unwrap_or(key)
            .trim_matches('"')
            .to_string();
        // `alias = { package = "real-name", … }`
        let real = value
            .split_once("package")
            .and_then(|(_, rest)| rest.split('"').nth(1))
            .map(String::from);
        names.insert(real.unwrap_or(name));
    }
    names
}

fn package_name(manifest: &str) -> String {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(value) = line.strip_prefix("name")
            && let Some((_, value)) = value.split_once('=')
        {
            return value.trim().trim_matches('"').to_string();
        }
    }
    panic!("a manifest without [package] name")
}

#[test]
fn providers_depend_on_the_contract_only() {
    let main = package_name(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap());
    let mut manifests = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("providers")).unwrap() {
        let path = entry.unwrap().path().join("Cargo.toml");
        if path.exists() {
            let text = std::fs::read_to_string(&path).unwrap();
            manifests.insert(package_name(&text), (path, text));
        }
    }
    assert!(manifests.contains_key(CONTRACT), "{:?}", manifests.keys());
    let mut problems = Vec::new();
    for (package, (path, text)) in &manifests {
        for dependency in normal_dependencies(text) {
            let provider = manifests.contains_key(&dependency) && dependency != CONTRACT;
            if dependency == main || (provider && &dependency != package) {
                problems.push(format!("{} depends on `{dependency}`", path.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nhelp: a provider depends only on the contract crate `{CONTRACT}`; the binary wires the providers in",
        problems.join("\n")
    );

    let sample = "[package]\nname = \"p\"\n[dependencies]\ninfraflux-provider.workspace = true\nother = { package = \"infraflux-talos\", path = \"../talos\" }\n[dependencies.infraflux]\npath = \"../..\"\n[dev-dependencies]\ninfraflux-proxmox.workspace = true\n";
    assert_eq!(
        normal_dependencies(sample),
        BTreeSet::from([
            "infraflux".to_string(),
            "infraflux-provider".into(),
            "infraflux-talos".into()
        ])
    );
}
