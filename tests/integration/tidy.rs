//! Checks that need no service and keep the docs and the layering from drifting:
//! docs/ARCHITECTURE.md names every module and only constants that exist, the service
//! clients stay in their adapters, pure modules import no adapter, and every metric the
//! dashboard and the alert rules name is one the code registers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Modules whose logic is pure: no I/O, so no adapter and no runtime.
const PURE: &[&str] = &[
    "message.rs",
    "lifecycle.rs",
    "records.rs",
    "outputs.rs",
    "pyjson.rs",
    "keys.rs",
    "plan.rs",
    "error.rs",
    "stages",
    "guess",
];

/// What a pure module must not name: the crate's adapters and wiring, and the I/O crates.
const ADAPTERS: &[&str] = &[
    "crate::store",
    "crate::amqp",
    "crate::runner",
    "crate::telemetry",
    "crate::app",
    "crate::ops",
    "lapin",
    "etcd_client",
    "tokio",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: impl AsRef<Path>) -> String {
    let path = repo().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.rs` file below `dir`, as a path relative to `src/` (`runner/link.rs`).
fn sources(dir: &Path, found: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(repo().join("src")).unwrap();
            found.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

fn all_sources() -> Vec<String> {
    let mut found = Vec::new();
    sources(&repo().join("src"), &mut found);
    found
}

/// The backticked words of docs/ARCHITECTURE.md.
fn named_in_architecture() -> Vec<String> {
    let map = read("docs/ARCHITECTURE.md");
    map.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_architecture_names_every_module_and_nothing_missing() {
    let named = named_in_architecture();
    let files = all_sources();
    // Every top-level file and folder of src/ (`ops/`, `main.rs`); a folder beside a file of
    // its name (`records/tests.rs` beside `records.rs`) is that file's module.
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| match f.split_once('/') {
            Some((folder, _)) if files.contains(&format!("{folder}.rs")) => format!("{folder}.rs"),
            Some((folder, _)) => format!("{folder}/"),
            None => f.clone(),
        })
        .collect();
    let unnamed: Vec<_> = modules.iter().filter(|m| !named.contains(m)).collect();
    assert!(
        unnamed.is_empty(),
        "docs/ARCHITECTURE.md does not name these modules: {unnamed:?}"
    );
    // Every file or folder it names exists (under src/, at any depth, or from the root).
    let stale: Vec<_> = named
        .iter()
        .filter(|n| (n.ends_with(".rs") || n.ends_with('/')) && !n.contains(' '))
        .filter(|n| {
            let bare = n.trim_end_matches('/');
            let in_src = files
                .iter()
                .any(|f| f.ends_with(bare) || f.contains(&format!("{bare}/")));
            !in_src
                && !repo().join(bare).exists()
                && !repo().join("tests/integration").join(bare).exists()
        })
        .collect();
    assert!(
        stale.is_empty(),
        "docs/ARCHITECTURE.md names files that do not exist: {stale:?}"
    );
}

#[test]
fn every_constant_the_architecture_names_exists() {
    let code: String = all_sources()
        .iter()
        .map(|f| read(format!("src/{f}")))
        .collect();
    let missing: Vec<_> = named_in_architecture()
        .into_iter()
        .filter(|w| {
            w.len() > 3
                && w.contains('_')
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .filter(|name| {
            // A constant, or a setting's environment variable.
            !code.contains(&format!("const {name}:"))
                && !code.contains(&format!("static {name}:"))
                && !code.contains(&format!("\"{name}\""))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md names constants the code does not define: {missing:?}"
    );
}

#[test]
fn the_service_clients_are_named_only_where_the_invariants_say() {
    let mut offences = Vec::new();
    for file in all_sources() {
        let allowed_etcd = file.starts_with("store/");
        let allowed_lapin = ["amqp/", "runner/", "ops/"]
            .iter()
            .any(|p| file.starts_with(p));
        for (n, line) in read(format!("src/{file}")).lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !allowed_etcd && code.contains("etcd_client") {
                offences.push(format!("src/{file}:{}: etcd_client", n + 1));
            }
            if !allowed_lapin && (code.contains("lapin::") || code.contains("use lapin")) {
                offences.push(format!("src/{file}:{}: lapin", n + 1));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "only store/ may name etcd_client, only amqp/, runner/ and ops/ lapin:\n{}",
        offences.join("\n")
    );
}

#[test]
fn pure_modules_import_no_adapter() {
    let mut offences = Vec::new();
    for file in all_sources() {
        if !PURE
            .iter()
            .any(|p| file == *p || file.starts_with(&format!("{p}/")))
        {
            continue;
        }
        for (n, line) in read(format!("src/{file}")).lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for adapter in ADAPTERS {
                let named = code.match_indices(adapter).any(|(at, _)| {
                    let before = code[..at].chars().last();
                    let after = code[at + adapter.len()..].chars().next();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if named {
                    offences.push(format!("src/{file}:{}: {adapter}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "pure modules reach for adapters:\n{}",
        offences.join("\n")
    );
}

/// `heat_pipeline_*` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("heat_pipeline_") {
        if text[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `heat_pipeline_*` in prose names the family, not a metric.
        if !name.ends_with('_') {
            names.insert(name);
        }
    }
    names
}

/// The metrics the code registers (`telemetry/events.rs` is the one place that does).
fn registered() -> (BTreeSet<String>, BTreeSet<String>) {
    let events = read("src/telemetry/events.rs");
    let mut all = BTreeSet::new();
    let mut histograms = BTreeSet::new();
    for line in events.lines() {
        for name in metric_names(line) {
            if line.contains("histogram!") {
                histograms.insert(name.clone());
            }
            all.insert(name);
        }
    }
    (all, histograms)
}

#[test]
fn every_metric_the_dashboard_and_alerts_name_is_registered() {
    let (registered, histograms) = registered();
    assert!(
        registered.len() >= 5,
        "found too few metrics: {registered:?}"
    );
    let mut files: Vec<PathBuf> = ["deploy/grafana", "deploy/prometheus"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(repo().join(dir)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.iter().any(|f| f.to_string_lossy().ends_with(".json")));
    let mut unknown = Vec::new();
    for file in &files {
        for name in metric_names(&read(file)) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| histograms.contains(*base));
            if !registered.contains(&name) && base.is_none() {
                unknown.push(format!("{}: {name}", file.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics the code does not register:\n{}",
        unknown.join("\n")
    );
}
