//! The Kubernetes manifests in deploy/kubernetes/ are valid against the
//! Kubernetes API schemas (the `kubernetes-validate` PyPI package, offline;
//! .ci/run installs it, and a missing validator fails this test rather than
//! skipping it), the validator really rejects a broken manifest, and the
//! example scenario the Job plays is a valid scenario.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn manifests_dir() -> PathBuf {
    repo_root().join("deploy/kubernetes")
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifests_dir())
        .expect("deploy/kubernetes exists")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// `kubernetes-validate --strict` over `files`: (passed, output).
fn validate(files: &[PathBuf]) -> (bool, String) {
    let output = Command::new("kubernetes-validate")
        .arg("--strict")
        .args(files)
        .output()
        .expect("kubernetes-validate runs (pip install kubernetes-validate; .ci/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{text}");
    (output.status.success(), text)
}

#[test]
fn every_manifest_validates() {
    let files = manifests();
    assert!(files.len() >= 6, "manifests: {files:?}");
    let (passed, output) = validate(&files);
    assert!(passed, "invalid manifest: {output}");
    // Every resource was checked (one `passed` line per resource).
    for kind in [
        "job/harness-shards",
        "job/harness-merge",
        "persistentvolumeclaim/harness-shards",
        "deployment/recovery-server",
        "service/recovery-server",
        "deployment/redis",
        "service/redis",
    ] {
        assert!(output.contains(kind), "{kind} not validated: {output}");
    }
}

#[test]
fn a_broken_manifest_fails_validation() {
    let job = std::fs::read_to_string(manifests_dir().join("shards-job.yaml")).expect("job");
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, broken) in [
        (
            "wrong-type.yaml",
            job.replace("completions: 8", "completions: eight"),
        ),
        (
            "unknown-field.yaml",
            job.replace("backoffLimit: 0", "backofLimit: 0"),
        ),
    ] {
        assert_ne!(broken, job, "{name}: the manifest changed");
        let path = dir.path().join(name);
        std::fs::write(&path, broken).expect("written");
        let (passed, output) = validate(&[path]);
        assert!(!passed, "{name} passed validation: {output}");
    }
}

#[test]
fn the_job_plays_its_completion_index_as_the_shard() {
    let job = std::fs::read_to_string(manifests_dir().join("shards-job.yaml")).expect("job");
    assert!(job.contains("completionMode: Indexed"));
    assert!(job.contains("$(JOB_COMPLETION_INDEX)/$(SHARDS)"));
    assert!(job.contains("batch.kubernetes.io/job-completion-index"));
    let scenario = manifests_dir().join("scenario-100k.toml");
    let finished = harness(&["validate", path_str(&scenario)]);
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert!(
        finished.stdout.contains("100000 sockets"),
        "{}",
        finished.stdout
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}
