//! Property test of the whole configuration pipeline on damaged input: the bundled
//! example with characters and lines deleted, inserted, replaced, re-indented and
//! swapped, or whole files replaced by arbitrary bytes, goes through `load_config`,
//! `resolve_model`, the problem renderer and `config show`'s renderer. Whatever the
//! input, nothing panics, and every problem points inside the file it names.
//!
//! A third property feeds the crash classes of hostile input (issue 16): block lists
//! nested thousands deep, flow nesting past the parser's limit, alias bombs spread over
//! several files, single lines of hundreds of thousands of values, files around the
//! size limits, merge keys, terminal escapes, links to devices, `${file:}` reaching out
//! of the configuration. Each must end (not hang), not crash, and be reported in place.
//!
//! The committed case count is small so `cargo test` stays fast; run longer with
//! `PROPTEST_CASES=20000 cargo test --test loader_fuzz` (see README "Tests").

use std::path::Path;

use infraflux::config::show::render_yaml;
use infraflux::config::{Selection, Variables, load_config};
use infraflux::diag::{Problems, render_problems};
use infraflux::model::resolve_model;
use proptest::prelude::*;
use proptest::sample::Index;

/// Cases per run unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 48;

/// `PROXMOX_TOKEN` is set (so the example can get far); anything else is not.
struct FakeEnvironment;

impl Variables for FakeEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        (name == "PROXMOX_TOKEN").then(|| "root@pam!infraflux=example".to_string())
    }
}

/// The bundled example: (path under config/, text).
fn example() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files = Vec::new();
    for directory in ["defaults", "templates", "environments", "clusters"] {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(directory))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = format!(
                "{directory}/{}",
                path.file_name().unwrap().to_str().unwrap()
            );
            files.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    files
}

/// Text that tends to matter to YAML, to interpolation or to the checks.
const TOKENS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "-",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\n",
    "\n  ",
    "  ",
    "\t",
    "#",
    "'",
    "\"",
    "&a ",
    "*a",
    "&a [1, 2]",
    "!!str ",
    "!!int ",
    "? ",
    "|\n  x\n",
    ">",
    "---\n",
    "...\n",
    "null",
    "~",
    "true",
    "0",
    "-1",
    "1.10",
    "1e999",
    ".nan",
    "0x7fffffffffffffff",
    "99999999999999999999",
    "4294967295",
    "${env:PROXMOX_TOKEN}",
    "${env:NOPE}",
    "${file:missing}",
    "${file:.}",
    "$${",
    "${",
    "${x:y}",
    "name: ",
    "name: cp",
    "template: large",
    "template: nope",
    "clusters: [",
    "workload",
    "environments:\n  dev:\n    ",
    "workers:\n  - name: g\n",
    "count: 5001",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "255.255.255.255",
    "10.30.0.10",
    "::1",
    "é",
    "\u{feff}",
    "\u{0}",
    "\u{2028}",
    "\r\n",
    "🦀",
];

#[derive(Debug, Clone)]
enum Edit {
    DeleteChars(Index, usize),
    Insert(Index, String),
    ReplaceChar(Index, char),
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    Indent(Index, usize),
    Dedent(Index),
}

#[derive(Debug, Clone)]
enum Damage {
    /// Edits of one example file's text.
    Edit(Index, Vec<Edit>),
    /// One example file replaced by arbitrary bytes.
    Replace(Index, Vec<u8>),
    /// A new file of some layer kind with arbitrary text.
    Add(Index, String),
}

fn insertion() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(TOKENS).prop_map(str::to_string),
        1 => ".{0,6}",
        1 => any::<char>().prop_map(String::from),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 1usize..8).prop_map(|(i, n)| Edit::DeleteChars(i, n)),
        (any::<Index>(), insertion()).prop_map(|(i, s)| Edit::Insert(i, s)),
        (any::<Index>(), any::<char>()).prop_map(|(i, c)| Edit::ReplaceChar(i, c)),
        any::<Index>().prop_map(Edit::DeleteLine),
        any::<Index>().prop_map(Edit::DuplicateLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<Index>(), 1usize..5).prop_map(|(i, n)| Edit::Indent(i, n)),
        any::<Index>().prop_map(Edit::Dedent),
    ]
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        8 => (any::<Index>(), prop::collection::vec(edit(), 1..6))
            .prop_map(|(f, e)| Damage::Edit(f, e)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 0..256))
            .prop_map(|(f, b)| Damage::Replace(f, b)),
        1 => (any::<Index>(), prop::collection::vec(insertion(), 0..12))
            .prop_map(|(k, parts)| Damage::Add(k, parts.concat())),
    ]
}

fn selection() -> impl Strategy<Value = Selection> {
    let environment = prop::option::of(prop::sample::select(&["dev", "staging", "prod", "qa"][..]));
    let cluster = prop::option::of(prop::sample::select(
        &["workload", "management", "edge", "nope"][..],
    ));
    (environment, cluster).prop_map(|(e, c)| Selection {
        environment: e.map(str::to_string),
        cluster: c.map(str::to_string),
    })
}

/// Byte offset of the char boundary at or before `index` of `text`.
fn boundary(text: &str, index: &Index) -> usize {
    if text.is_empty() {
        return 0;
    }
    let mut at = index.index(text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut text = text.to_string();
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let count = lines.len();
    let line = |i: &Index| i.index(count);
    match edit {
        Edit::DeleteChars(at, count) => {
            let start = boundary(&text, at);
            let end = text[start..]
                .char_indices()
                .nth(*count)
                .map_or(text.len(), |(i, _)| start + i);
            text.replace_range(start..end, "");
            return text;
        }
        Edit::Insert(at, inserted) => {
            text.insert_str(boundary(&text, at), inserted);
            return text;
        }
        Edit::ReplaceChar(at, with) => {
            let start = boundary(&text, at);
            let end = text[start..]
                .chars()
                .next()
                .map_or(start, |c| start + c.len_utf8());
            text.replace_range(start..end, &with.to_string());
            return text;
        }
        Edit::DeleteLine(i) => {
            let i = line(i);
            lines.remove(i);
        }
        Edit::DuplicateLine(i) => {
            let i = line(i);
            lines.insert(i, lines[i].clone());
        }
        Edit::SwapLines(a, b) => {
            let (a, b) = (line(a), line(b));
            lines.swap(a, b);
        }
        Edit::Indent(i, by) => {
            let i = line(i);
            lines[i].insert_str(0, &" ".repeat(*by));
        }
        Edit::Dedent(i) => {
            let i = line(i);
            let trimmed = lines[i].trim_start().to_string();
            lines[i] = trimmed;
        }
    }
    lines.join("\n")
}

/// Write the damaged example to a fresh directory and run the pipeline on it.
fn run(files: &[(String, Vec<u8>)], selection: &Selection) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), files);
    run_in(dir.path(), selection)
}

fn write_files(root: &Path, files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// Run the pipeline on the configuration in `dir`.
fn run_in(dir: &Path, selection: &Selection) -> Result<(), TestCaseError> {
    let (config, mut problems) = load_config(dir, selection, &FakeEnvironment);
    // The library does not require a clean load before resolving: resolve anyway, to
    // reach as much of the model as the damage allows.
    let (model, resolve_problems) = resolve_model(&config);
    problems.extend(resolve_problems);
    prop_assert!(model.is_some() || problems.has_errors());
    check_origins(&problems, &config)?;
    let rendered = render_problems(&problems, config.sources(), false);
    prop_assert!(problems.is_empty() || !rendered.is_empty());
    for effective in &config.effective {
        render_yaml(&effective.node, Some(config.sources()));
    }
    Ok(())
}

/// Every problem that names a place points inside the text of its file.
fn check_origins(
    problems: &Problems,
    config: &infraflux::config::Configuration,
) -> Result<(), TestCaseError> {
    for problem in problems.iter() {
        let Some(origin) = problem.origin else {
            continue;
        };
        let file = config.sources().get(origin.file);
        let end = origin.start + origin.len;
        prop_assert!(
            end <= file.text.len()
                && file.text.is_char_boundary(origin.start)
                && file.text.is_char_boundary(end),
            "{problem:?} outside {}",
            file.path.display()
        );
        prop_assert!(origin.line >= 1 && origin.column >= 1, "{problem:?}");
        prop_assert_eq!(
            file.line_column(origin.start),
            (origin.line, origin.column),
            "{:?}",
            problem
        );
    }
    Ok(())
}

/// One crash class of hostile input, with its size.
#[derive(Debug, Clone)]
enum Hostile {
    /// `- - - … v` (compact) or one more indent per line.
    DeepBlock { depth: usize, compact: bool },
    /// `[[[…]]]` / `{a: {a: …}}`.
    DeepFlow { depth: usize, mapping: bool },
    /// The same alias bomb in several files: each under any per-file bound.
    AliasBombs {
        files: usize,
        width: usize,
        levels: usize,
    },
    /// One line of `items` values, ASCII or not.
    LongLine { items: usize, ascii: bool },
    /// A file of about `bytes` bytes of ordinary values.
    Large { bytes: usize },
    /// Merge keys in odd places.
    MergeKeys(Vec<String>),
    /// Terminal escapes in keys and values.
    Escapes(String),
    /// A layer file that is a link to a device (or a directory).
    LinkTo(&'static str),
    /// `${file:…}` with a path out of the configuration.
    FileOutside(&'static str),
}

fn hostile() -> impl Strategy<Value = Hostile> {
    prop_oneof![
        (40usize..6_000, any::<bool>())
            .prop_map(|(depth, compact)| Hostile::DeepBlock { depth, compact }),
        (200usize..400, any::<bool>())
            .prop_map(|(depth, mapping)| Hostile::DeepFlow { depth, mapping }),
        (1usize..6, 2usize..14, 2usize..8).prop_map(|(files, width, levels)| {
            Hostile::AliasBombs {
                files,
                width,
                levels,
            }
        }),
        (1_000usize..150_000, any::<bool>())
            .prop_map(|(items, ascii)| Hostile::LongLine { items, ascii }),
        ((1usize << 20) - 64..(1usize << 20) + 64).prop_map(|bytes| Hostile::Large { bytes }),
        prop::collection::vec(
            prop::sample::select(
                &[
                    "<<: *a",
                    "<<: [*a, *b]",
                    "<<: 5",
                    "<<: [1]",
                    "'<<': 1",
                    "<<: {x: 1}",
                    "<<: *a\n  <<: *b",
                    "a: &a {cpu: 1}",
                    "b: &b [x]",
                    "<<: null",
                ][..],
            )
            .prop_map(str::to_string),
            1..6,
        )
        .prop_map(Hostile::MergeKeys),
        prop::sample::select(
            &[
                "\\e]0;owned\\a",
                "\\e[2J\\e[H",
                "\\x9b31m",
                "\\u202e",
                "\\0\\b\\r"
            ][..],
        )
        .prop_map(|s| Hostile::Escapes(s.to_string())),
        prop::sample::select(&["/dev/zero", "/dev/null", "/", "/proc/self/mem"][..])
            .prop_map(Hostile::LinkTo),
        prop::sample::select(
            &[
                "../../../../../../etc/passwd",
                "/etc/hostname",
                "../secrets/token",
                "/dev/zero",
                "..",
            ][..],
        )
        .prop_map(Hostile::FileOutside),
    ]
}

/// The hostile files a case adds to (or replaces in) the example.
fn hostile_files(hostile: &Hostile) -> Vec<(String, Vec<u8>)> {
    let one = |name: &str, text: String| vec![(name.to_string(), text.into_bytes())];
    match hostile {
        Hostile::DeepBlock { depth, compact } => {
            let body = if *compact {
                format!("  {}v\n", "- ".repeat(*depth))
            } else {
                (1..=*depth)
                    .map(|i| format!("{}-\n", " ".repeat(i)))
                    .collect::<String>()
            };
            one(
                "environments/dev.yaml",
                format!("clusters: [workload]\nworkloads:\n  image_tag:\n{body}"),
            )
        }
        Hostile::DeepFlow { depth, mapping } => {
            let value = if *mapping {
                format!("{}1{}", "{a: ".repeat(*depth), "}".repeat(*depth))
            } else {
                format!("{}1{}", "[".repeat(*depth), "]".repeat(*depth))
            };
            one(
                "defaults/deep.yaml",
                format!("platform: {{cilium: {{values: {{x: {value}}}}}}}\n"),
            )
        }
        Hostile::AliasBombs {
            files,
            width,
            levels,
        } => (0..*files)
            .map(|f| {
                let mut text = format!("x{f}: &a0 [{}]\n", vec!["x"; *width].join(", "));
                for level in 1..*levels {
                    let items = vec![format!("*a{}", level - 1); *width].join(", ");
                    text.push_str(&format!("x{f}_{level}: &a{level} [{items}]\n"));
                }
                (format!("defaults/bomb{f}.yaml"), text.into_bytes())
            })
            .collect(),
        Hostile::LongLine { items, ascii } => {
            let item = if *ascii { "1, " } else { "é, " };
            one(
                "defaults/long.yaml",
                format!("network:\n  nodes:\n    dns: [{}]\n", item.repeat(*items)),
            )
        }
        Hostile::Large { bytes } => {
            let mut text = String::from("platform:\n  monitoring:\n    values:\n");
            let mut i = 0;
            while text.len() < *bytes {
                text.push_str(&format!("      key{i}: value-{i}\n"));
                i += 1;
            }
            text.truncate(*bytes);
            one("defaults/large.yaml", text)
        }
        Hostile::MergeKeys(lines) => one(
            "defaults/merge.yaml",
            format!(
                "platform:\n  cilium:\n    values:\n      a: &a {{cpu: 1}}\n      b: &b {{x: 1}}\n      c:\n{}\n",
                lines
                    .iter()
                    .map(|l| format!("        {}", l.replace('\n', "\n        ")))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        ),
        Hostile::Escapes(escape) => one(
            "clusters/edge.yaml",
            format!(
                "role: edge\ntemplate: \"small{escape}\"\n\"k{escape}\": 1\nenvironments:\n  prod:\n    network: {{vip: \"10.40.0.5{escape}\"}}\n"
            ),
        ),
        Hostile::LinkTo(_) => Vec::new(),
        Hostile::FileOutside(path) => one(
            "defaults/proxmox.yaml",
            format!(
                "proxmox:\n  endpoint: https://pve1.lab.example.internal:8006\n  token: \"${{file:{path}}}\"\n  nodes: [pve1]\n  storage: local-lvm\n  bridge: vmbr0\n"
            ),
        ),
    }
}

fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn damaged_configurations_never_panic(
        damages in prop::collection::vec(damage(), 1..4),
        selection in selection(),
    ) {
        let example = example();
        let mut files: Vec<(String, Vec<u8>)> = example
            .iter()
            .map(|(name, text)| (name.clone(), text.clone().into_bytes()))
            .collect();
        for damage in &damages {
            match damage {
                Damage::Edit(file, edits) => {
                    let i = file.index(files.len());
                    let mut text = String::from_utf8_lossy(&files[i].1).into_owned();
                    for edit in edits {
                        text = apply(&text, edit);
                    }
                    files[i].1 = text.into_bytes();
                }
                Damage::Replace(file, bytes) => {
                    let i = file.index(files.len());
                    files[i].1 = bytes.clone();
                }
                Damage::Add(kind, text) => {
                    let directory = ["defaults", "templates", "environments", "clusters"]
                        [kind.index(4)];
                    files.push((format!("{directory}/added.yaml"), text.clone().into_bytes()));
                }
            }
        }
        run(&files, &selection)?;
    }

    #[test]
    fn arbitrary_bytes_in_every_layer_never_panic(
        layers in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..128), 4),
    ) {
        let files: Vec<(String, Vec<u8>)> = ["defaults/a.yaml", "templates/small.yaml", "environments/dev.yaml", "clusters/workload.yaml"]
            .iter()
            .zip(layers)
            .map(|(name, bytes)| (name.to_string(), bytes))
            .collect();
        run(&files, &Selection::default())?;
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn hostile_input_ends_without_crashing_and_is_located(
        attacks in prop::collection::vec(hostile(), 1..3),
        selection in selection(),
    ) {
        // A case that kills the process (a stack overflow, the OOM killer) leaves proptest
        // no chance to report it: FUZZ_TRACE=1 (with --nocapture) names each case first.
        if std::env::var_os("FUZZ_TRACE").is_some() {
            eprintln!("CASE {attacks:?} {selection:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let example: Vec<(String, Vec<u8>)> = example()
            .into_iter()
            .map(|(name, text)| (name, text.into_bytes()))
            .collect();
        write_files(dir.path(), &example);
        for attack in &attacks {
            write_files(dir.path(), &hostile_files(attack));
            if let Hostile::LinkTo(target) = attack {
                let link = dir.path().join("templates/linked.yaml");
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(target, link).unwrap();
            }
        }
        run_in(dir.path(), &selection)?;
        // Hostile input is reported in place: only a selection names no file.
        let (config, problems) = load_config(dir.path(), &selection, &FakeEnvironment);
        for problem in problems.iter().filter(|p| p.origin.is_none()) {
            prop_assert!(
                ["config::unknown-environment", "config::unknown-cluster", "config::no-environments"]
                    .contains(&problem.code),
                "not located: {problem:?}"
            );
        }
        drop(config);
    }
}

#[test]
fn the_undamaged_example_is_clean() {
    // The baseline the damage starts from: without damage, no problems at all.
    let files: Vec<(String, Vec<u8>)> = example()
        .into_iter()
        .map(|(name, text)| (name, text.into_bytes()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in &files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let (config, problems) = load_config(dir.path(), &Selection::default(), &FakeEnvironment);
    assert!(problems.is_empty(), "{problems:?}");
    let (model, problems) = resolve_model(&config);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(model.unwrap().clusters().count(), 5);
}
