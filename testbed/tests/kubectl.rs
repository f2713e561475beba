//! Real kubectl against the playground's embedded API server: what a new user types in the
//! README. Skipped with a printed reason where kubectl is not installed, unless
//! `REQUIRE_KUBECTL=1` (as in CI), where its absence fails. `KUBECTL_ALSO` (paths separated by
//! `:`) names more kubectl versions to run the walkthrough with; CI passes the oldest and the
//! newest installed beside kubectl.

mod common;

use common::*;
use selfupgrade_testbed::playground::playground_seed;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

/// `kubectl`, if it runs; its absence fails the test under `REQUIRE_KUBECTL=1`.
fn kubectl_available() -> bool {
    let available = runs(Path::new("kubectl"));
    if !available {
        assert!(
            std::env::var("REQUIRE_KUBECTL").as_deref() != Ok("1"),
            "kubectl is required (REQUIRE_KUBECTL=1) but not installed"
        );
        eprintln!("skipped: kubectl is not installed");
    }
    available
}

fn runs(kubectl: &Path) -> bool {
    Command::new(kubectl)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `kubectl` and every `KUBECTL_ALSO` binary, each of which must run.
fn kubectl_versions() -> Vec<PathBuf> {
    let mut binaries = vec![PathBuf::from("kubectl")];
    let also = std::env::var("KUBECTL_ALSO").unwrap_or_default();
    for path in also.split(':').filter(|p| !p.is_empty()) {
        assert!(
            runs(Path::new(path)),
            "KUBECTL_ALSO names {path}, which does not run"
        );
        binaries.push(PathBuf::from(path));
    }
    binaries
}

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    kubectl_as(Path::new("kubectl"), kubeconfig, args).await
}

async fn kubectl_as(binary: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    let (binary, kubeconfig) = (binary.to_path_buf(), kubeconfig.to_path_buf());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(&binary)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(&args)
            .output()
            .expect("kubectl runs")
    })
    .await
    .expect("joined")
}

/// The playground, and a directory holding its kubeconfig as `playground.kubeconfig`.
async fn playground_with_kubeconfig() -> (
    selfupgrade_testbed::playground::Playground,
    tempfile::TempDir,
) {
    let playground = start_playground(playground_seed().expect("seed")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    playground
        .apiserver
        .write_kubeconfig(&dir.path().join("playground.kubeconfig"))
        .expect("kubeconfig");
    (playground, dir)
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_works_with_real_kubectl() {
    if !kubectl_available() {
        return;
    }
    for binary in kubectl_versions() {
        let version = kubectl_as(&binary, Path::new("/dev/null"), &["version", "--client"]).await;
        println!(
            "walkthrough with {}: {}",
            binary.display(),
            text(&version).0.trim()
        );
        walkthrough(&binary).await;
    }
}

/// The README's walkthrough, typed with `binary`, against a playground of its own.
async fn walkthrough(binary: &Path) {
    let (playground, dir) = playground_with_kubeconfig().await;
    let kubeconfig = dir.path().join("playground.kubeconfig");
    let kubectl = |kubeconfig: &Path, args: &[&str]| {
        let (kubeconfig, args) = (kubeconfig.to_path_buf(), args.to_vec());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl_as(binary, &kubeconfig, &args).await
        }
    };

    let applied = kubectl(&kubeconfig, &["apply", "-f", EXAMPLES]).await;
    let (out, err) = text(&applied);
    assert!(applied.status.success(), "apply failed: {out}\n{err}");
    for name in ["approve-alice", "deny-bob", "verify-carol", "approve-dave"] {
        assert!(
            out.contains(&format!(
                "selfupgradedecision.quicksight.selfupgrade.io/{name} created"
            )),
            "{out}"
        );
    }

    let waited = kubectl(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Ready",
            "sud/approve-alice",
            "--timeout=60s",
        ],
    )
    .await;
    assert!(waited.status.success(), "{:?}", text(&waited));
    assert!(text(&waited).0.contains("condition met"));
    let waited = kubectl(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Ready",
            "sud/deny-bob",
            "--timeout=60s",
        ],
    )
    .await;
    assert!(waited.status.success(), "{:?}", text(&waited));

    let listed = kubectl(&kubeconfig, &["get", "sud"]).await;
    let (out, err) = text(&listed);
    assert!(listed.status.success(), "{err}");
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "ACTION",
            "REQUEST",
            "STATUS",
            "USER",
            "REQUESTED",
            "READY",
            "APPROVAL",
            "AGE"
        ]
    );
    let alice = out
        .lines()
        .find(|l| l.starts_with("approve-alice"))
        .expect("alice's row");
    let cells: Vec<&str> = alice.split_whitespace().collect();
    assert_eq!(
        &cells[1..7],
        [
            "APPROVE",
            "5c1e7a52-0b7d-4b8e-9a51-2f0c1d9e0001",
            "APPROVED",
            "alice@example.com",
            "AUTHOR",
            "True"
        ]
    );

    // The operator writes events.k8s.io Events; `describe` reads core ones, as on a cluster.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let described = loop {
        let described = kubectl(&kubeconfig, &["describe", "sud/verify-carol"]).await;
        assert!(described.status.success(), "{:?}", text(&described));
        let (out, _) = text(&described);
        if out.contains("VerifyFailed") || std::time::Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert!(described.contains("Upgrade Request Id:"), "{described}");
    let events = described
        .split("Events:")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(
        events.contains("Warning") && events.contains("VerifyFailed"),
        "{described}"
    );
    let listed = kubectl(&kubeconfig, &["get", "events"]).await;
    let (out, err) = text(&listed);
    assert!(listed.status.success(), "{err}");
    assert!(
        out.starts_with("LAST SEEN") && out.contains("selfupgradedecision/verify-carol"),
        "{out}"
    );

    let invalid = "apiVersion: quicksight.selfupgrade.io/v1alpha1\nkind: SelfUpgradeDecision\nmetadata:\n  name: bad\nspec:\n  awsAccountId: \"1234\"\n  upgradeRequestId: x\n  action: APPROVE\n";
    let bad_file = dir.path().join("bad.yaml");
    std::fs::write(&bad_file, invalid).expect("write");
    let rejected = kubectl(
        &kubeconfig,
        &["apply", "-f", bad_file.to_str().expect("utf-8")],
    )
    .await;
    let (_, err) = text(&rejected);
    assert!(!rejected.status.success());
    assert!(
        err.contains("is invalid") && err.contains("spec.awsAccountId"),
        "{err}"
    );

    let deleted = kubectl(&kubeconfig, &["delete", "sud", "approve-alice"]).await;
    assert!(deleted.status.success(), "{:?}", text(&deleted));
    let gone = kubectl(&kubeconfig, &["get", "sud", "approve-alice"]).await;
    assert!(!gone.status.success());
    assert!(text(&gone).1.contains("NotFound"), "{:?}", text(&gone));

    playground.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_watch_prints_rows_as_status_changes() {
    if !kubectl_available() {
        return;
    }
    let (playground, dir) = playground_with_kubeconfig().await;
    let kubeconfig = dir.path().join("playground.kubeconfig");

    let watch = {
        let kubeconfig = kubeconfig.clone();
        tokio::task::spawn_blocking(move || {
            Command::new("timeout")
                .args(["8", "kubectl", "--kubeconfig"])
                .arg(&kubeconfig)
                .args(["get", "sud", "-w"])
                .output()
                .expect("kubectl runs")
        })
    };
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let applied = kubectl(
        &kubeconfig,
        &["apply", "-f", &format!("{EXAMPLES}/deny-bob.yaml")],
    )
    .await;
    assert!(applied.status.success(), "{:?}", text(&applied));
    let output = watch.await.expect("joined");
    let (out, err) = text(&output);
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("deny-bob")).collect();
    assert!(
        rows.len() >= 2,
        "expected the row as created and as DENIED:\n{out}\n{err}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("DENIED") && r.contains("True")),
        "{out}"
    );
    playground.stop().await;
}

/// The install path of the README: an empty playground (no CRDs, no RBAC, no operator
/// namespace), `kubectl apply --server-side -k deploy/` as a GitOps tool applies it, `kubectl
/// wait --for condition=established crd --all`, then the examples. The operator runs as the
/// ServiceAccount `deploy/` creates, under the RBAC it grants — read from the cluster, not from
/// a file — and decides a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_installs_with_kubectl_on_an_empty_cluster_and_the_operator_runs_under_its_rbac() {
    use selfupgrade_testbed::playground::{Playground, PlaygroundArgs, Tuning};
    if !kubectl_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = dir.path().join("admin.kubeconfig");
    let args = PlaygroundArgs {
        kubeconfig: admin.clone(),
        crd_dir: None,
        empty: true,
        apiserver_port: 0,
        quicksight_port: 0,
    };
    let playground =
        Playground::start_tuned(&args, playground_seed().expect("seed"), Tuning::default())
            .await
            .expect("starts");
    playground
        .apiserver
        .write_kubeconfig(&admin)
        .expect("kubeconfig");
    let nothing = kubectl(&admin, &["get", "crd", "-o", "name"]).await;
    assert_eq!(text(&nothing).0, "", "an empty cluster");

    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
    let applied = kubectl(&admin, &["apply", "--server-side", "-k", deploy]).await;
    let (out, err) = text(&applied);
    assert!(applied.status.success(), "{out}\n{err}");
    for object in [
        "customresourcedefinition.apiextensions.k8s.io/selfupgradedecisions.quicksight.selfupgrade.io",
        "namespace/selfupgrade-operator",
        "serviceaccount/selfupgrade-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/selfupgrade-operator",
        "deployment.apps/selfupgrade-operator",
        "poddisruptionbudget.policy/selfupgrade-operator",
        "networkpolicy.networking.k8s.io/selfupgrade-operator",
    ] {
        assert!(
            out.contains(&format!("{object} serverside-applied")),
            "{out}"
        );
    }
    let established = kubectl(
        &admin,
        &[
            "wait",
            "--for",
            "condition=established",
            "crd",
            "--all",
            "--timeout=30s",
        ],
    )
    .await;
    let (out, err) = text(&established);
    assert!(established.status.success(), "{out}\n{err}");
    let operator_crds = selfupgrade_operator::cli::crds().len();
    assert_eq!(out.matches("condition met").count(), operator_crds, "{out}");

    let applied = kubectl(&admin, &["apply", "-f", EXAMPLES]).await;
    assert!(applied.status.success(), "{:?}", text(&applied));
    let ready = kubectl(
        &admin,
        &[
            "wait",
            "--for=condition=Ready",
            "sud/approve-alice",
            "--timeout=60s",
        ],
    )
    .await;
    assert!(ready.status.success(), "{:?}", text(&ready));
    let decided = playground
        .quicksight
        .handle
        .counters()
        .count("UpdateSelfUpgrade", "ok");
    assert!(
        decided >= 1,
        "the operator decided under the RBAC deploy/ installed"
    );
    playground.stop().await;
}

/// kubectl's typed `create` commands send their objects as protobuf (as to every real API
/// server); each is stored as the object it describes and reads back with `get -o yaml`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_create_commands_work_in_protobuf() {
    use selfupgrade_testbed::apiserver::{ApiServerConfig, RunningApiServer};
    if !kubectl_available() {
        return;
    }
    let server = RunningApiServer::start(ApiServerConfig::default())
        .await
        .expect("starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = dir.path().join("admin.kubeconfig");
    server.write_kubeconfig(&admin).expect("kubeconfig");
    let role_rule = "--resource=selfupgradedecisions.quicksight.selfupgrade.io";
    let commands: [&[&str]; 5] = [
        &["create", "namespace", "team-a"],
        &["create", "serviceaccount", "bot", "-n", "team-a"],
        &[
            "create",
            "configmap",
            "settings",
            "-n",
            "team-a",
            "--from-literal=mode=observe",
        ],
        &[
            "create",
            "role",
            "reader",
            "-n",
            "team-a",
            "--verb=get,list",
            role_rule,
        ],
        &[
            "create",
            "rolebinding",
            "reader",
            "-n",
            "team-a",
            "--role=reader",
            "--serviceaccount=team-a:bot",
        ],
    ];
    for command in commands {
        let created = kubectl(&admin, command).await;
        assert!(
            created.status.success(),
            "{command:?}: {:?}",
            text(&created)
        );
    }
    let get = |args: &'static [&'static str]| {
        let admin = admin.clone();
        async move {
            let output = kubectl(&admin, args).await;
            assert!(output.status.success(), "{args:?}: {:?}", text(&output));
            serde_yaml::from_slice::<serde_yaml::Value>(&output.stdout).expect("YAML")
        }
    };
    let namespace = get(&["get", "namespace", "team-a", "-o", "yaml"]).await;
    assert_eq!(namespace["metadata"]["name"], "team-a");
    // As a real server's namespace strategy sets them.
    assert_eq!(
        namespace["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team-a"
    );
    assert_eq!(namespace["spec"]["finalizers"][0], "kubernetes");
    assert_eq!(namespace["status"]["phase"], "Active");
    let account = get(&["get", "serviceaccount", "bot", "-n", "team-a", "-o", "yaml"]).await;
    assert_eq!(account["metadata"]["namespace"], "team-a");
    let config = get(&["get", "configmap", "settings", "-n", "team-a", "-o", "yaml"]).await;
    assert_eq!(config["data"]["mode"], "observe");
    let role = get(&["get", "role", "reader", "-n", "team-a", "-o", "yaml"]).await;
    assert_eq!(role["rules"][0]["verbs"][1], "list");
    assert_eq!(
        role["rules"][0]["apiGroups"][0],
        "quicksight.selfupgrade.io"
    );
    let binding = get(&["get", "rolebinding", "reader", "-n", "team-a", "-o", "yaml"]).await;
    assert_eq!(binding["roleRef"]["name"], "reader");
    assert_eq!(binding["subjects"][0]["name"], "bot");
}
