//! The Kubernetes manifests and Prometheus rules of `deploy/` are checked here, not just
//! committed: `scripts/k8s-validate.sh` validates every object against the Kubernetes,
//! KEDA and Prometheus Operator schemas, renders the kustomizations and cross-checks the
//! workers against their autoscalers. These tests run it on the real tree, check that
//! it fails on broken copies (so a pass means something), and parse the configuration
//! files the manifests embed (`flotilla.toml`, `targets.toml`) with the real parsers.
//!
//! They need node and npm (present on every machine of this project's kind); the
//! validator's packages are installed once into `deploy/validate/node_modules`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flotilla_server::ServerConfig;
use serde_json::Value;

/// The built-in queues, each of which must have a worker Deployment and a server queue.
const BUILTIN_QUEUES: [&str; 4] = ["q-ingest", "q-transcode", "q-ai-enrich", "q-distribution"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `scripts/k8s-validate.sh` with `args`.
fn validate(args: &[&std::ffi::OsStr]) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts/k8s-validate.sh"))
        .args(args)
        .output()
        .expect("bash runs scripts/k8s-validate.sh")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The number before `label` in the summary line, e.g. `24 objects valid`.
fn count_in_summary(stdout: &str, label: &str) -> usize {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("k8s-validate: ") && l.contains(label))
        .unwrap_or_else(|| panic!("no summary line with {label:?} in {stdout:?}"));
    let before = &line[..line.find(label).unwrap()];
    let number = before.trim_end().rsplit([' ', '(', ';']).next().unwrap();
    number
        .parse()
        .unwrap_or_else(|_| panic!("{number:?} in {line:?}"))
}

/// Every YAML file under `dir`, recursively.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files
}

/// Objects in the manifests counted without the validator: top-level `kind:` lines, less
/// the kustomizations.
fn objects_in_manifests() -> usize {
    yaml_files(&repo().join("deploy/k8s"))
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .map(|text| {
            text.lines()
                .filter(|l| l.starts_with("kind: ") && l.trim() != "kind: Kustomization")
                .count()
        })
        .sum()
}

#[test]
fn the_manifests_and_rules_validate_and_every_object_is_counted() {
    let out = validate(&[]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "validation failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
    assert_eq!(
        count_in_summary(&stdout, "objects valid"),
        objects_in_manifests()
    );
    // One worker Deployment per built-in queue plus the server; a ScaledObject and an
    // HPA for each worker.
    assert_eq!(count_in_summary(&stdout, "Deployments"), 5);
    assert_eq!(count_in_summary(&stdout, "ScaledObjects"), 4);
    assert_eq!(count_in_summary(&stdout, "HPAs"), 4);
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/flotilla-alerts.yml"))
        .unwrap()
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert: "))
        .count();
    assert_eq!(count_in_summary(&stdout, "alert rules valid"), rules);
}

/// Copies `from` into `to`, recursively.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// A copy of deploy/k8s with `from` replaced by `to` (once) in `file`.
fn broken_copy(file: &str, from: &str, to: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("deploy/k8s"), dir.path());
    let path = dir.path().join(file);
    let original = std::fs::read_to_string(&path).unwrap();
    assert!(original.contains(from), "{file} has no {from:?}");
    std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
    dir
}

#[test]
fn broken_copies_of_the_manifests_fail_validation() {
    let cases = [
        // Schema: an integer field given a string.
        (
            "base/server.yaml",
            "replicas: 2",
            "replicas: \"two\"",
            "replicas must be integer",
        ),
        // Schema: a ScaledObject without its required target.
        (
            "keda/scaledobjects.yaml",
            "  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: flotilla-worker-ingest\n",
            "",
            "must have required property scaleTargetRef",
        ),
        // Cross-check: the pod is killed before the drain can finish.
        (
            "base/worker-transcode.yaml",
            "terminationGracePeriodSeconds: 150",
            "terminationGracePeriodSeconds: 60",
            "must exceed --shutdown-grace",
        ),
        // Cross-check: a queue no server has.
        (
            "base/worker-ingest.yaml",
            "--queues=q-ingest",
            "--queues=q-ingset",
            "not a built-in queue",
        ),
        // Unknown kinds are errors, not skips.
        (
            "base/namespace.yaml",
            "kind: Namespace",
            "kind: Namespaces",
            "unknown kind Namespaces",
        ),
    ];
    for (file, from, to, expected) in cases {
        let dir = broken_copy(file, from, to);
        let out = validate(&[dir.path().as_os_str()]);
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success(),
            "{file}: {from:?} -> {to:?} passed:\n{}",
            text(&out.stdout)
        );
        assert!(
            stderr.contains(expected),
            "{file}: wanted {expected:?} in:\n{stderr}"
        );
        assert!(stderr.contains("k8s-validate: FAILED"), "{stderr}");
    }
}

/// Every object of every rendered stack, from the validator's `--dump`.
fn rendered_objects() -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("rendered.json");
    let out = validate(&["--dump".as_ref(), dump.as_os_str()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stacks: Vec<Value> = serde_json::from_slice(&std::fs::read(&dump).unwrap()).unwrap();
    stacks
        .iter()
        .flat_map(|s| s["objects"].as_array().unwrap().clone())
        .collect()
}

fn config_map_file(objects: &[Value], name: &str, key: &str) -> String {
    objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
        .and_then(|o| o["data"][key].as_str())
        .unwrap_or_else(|| panic!("no ConfigMap {name} with {key}"))
        .to_owned()
}

/// The environment variables the server Deployment's container sets.
fn server_env_names(objects: &[Value]) -> Vec<&str> {
    let server = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "flotilla-server")
        .expect("a flotilla-server Deployment");
    server["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect()
}

#[test]
fn the_embedded_server_config_and_targets_parse_with_the_real_parsers() {
    let objects = rendered_objects();
    let toml = config_map_file(&objects, "flotilla-server-config", "flotilla.toml");
    let mut config = ServerConfig::from_toml(&toml, Path::new("flotilla.toml")).unwrap();
    config
        .apply_env(|k| {
            (k == "FLOTILLA_STORE").then(|| "postgres://flotilla@postgres/flotilla".into())
        })
        .unwrap();
    config.validate().unwrap();
    // The Secret's four keys reach the server as the variables flotilla.toml names.
    let tokens = config
        .resolve_tokens(|var| {
            var.ends_with("_TOKEN")
                .then(|| format!("{var}-0123456789abcdef"))
        })
        .unwrap();
    assert_eq!(tokens.len(), 4);
    let server_env = server_env_names(&objects);
    for token in &config.tokens {
        let var = token.token_env.as_deref().unwrap();
        assert!(
            server_env.contains(&var),
            "the server pod does not set {var}"
        );
    }
    let mut queues: Vec<_> = config.queues.iter().map(|q| q.name.as_str()).collect();
    queues.sort_unstable();
    let mut builtin = BUILTIN_QUEUES.to_vec();
    builtin.sort_unstable();
    assert_eq!(queues, builtin);

    let targets = config_map_file(&objects, "flotilla-targets", "targets.toml");
    let targets: BTreeMap<String, flotilla_distribute::TargetConfig> =
        toml::from_str(&targets).unwrap();
    assert!(!targets.is_empty());
    flotilla_distribute::Distributor::new(targets).unwrap();
}
