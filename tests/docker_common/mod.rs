//! Helpers for the Docker tests: real `bocluster:latest` containers on Docker networks that
//! the test creates, queried through HTTP ports published on loopback addresses.
//!
//! Addresses: every network a test makes is a `10.201.N.0/24` with its gateway (the host's side
//! of the bridge) at `.1` and dynamic addresses only in the upper half, so fixed `--ip`s
//! below `.128` never clash. N is picked at run time: the first subnet the engine accepts (it
//! refuses overlapping ones), so tests running in parallel, or in two checkouts at once, never
//! share a network. A container at `10.201.N.h` publishes its HTTP API on `127.201.N.h:9090`,
//! which is therefore free as well. Nothing is sent anywhere but to loopback and to containers
//! on these networks.
//!
//! A [`Fleet`] removes every container (with its anonymous volumes), network and named volume
//! it made when it is dropped, also when the test fails; on failure it prints the containers'
//! logs first.

#![allow(dead_code)]

pub mod net_delay;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bocluster::cli::sql::{post_statement, ApiOutcome};
use serde_json::Value;

/// The image under test: `BOCLUSTER_IMAGE` (as `docker/build.sh` reads it), else
/// `bocluster:latest`.
pub fn image() -> String {
    std::env::var("BOCLUSTER_IMAGE")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "bocluster:latest".to_string())
}
/// Deadline for anything that should take a few seconds (polls end as soon as it holds).
pub const DEADLINE: Duration = Duration::from_secs(30);
/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(100);

/// Runs `docker args...`; its trimmed stdout, or an error with its stderr.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("docker {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Like [`docker`], panicking on failure.
pub fn docker_ok(args: &[&str]) -> String {
    docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Why no Docker engine can be used, if none answers `docker info`.
fn engine_missing() -> Option<&'static str> {
    static MISSING: OnceLock<Option<String>> = OnceLock::new();
    MISSING
        .get_or_init(|| {
            docker(&["info", "--format", "{{.ServerVersion}}"])
                .err()
                .map(|e| e.lines().next().unwrap_or_default().to_string())
        })
        .as_deref()
}

/// Builds the image once per test binary if it is missing (tests wait for each other here).
fn image_ready() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let image = image();
            if docker(&["image", "inspect", "--format", "{{.Id}}", &image]).is_ok() {
                return Ok(());
            }
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/build.sh");
            eprintln!("docker tests: {image} is missing; building it with {script:?}");
            let status = Command::new("bash")
                .arg(&script)
                .env("BOCLUSTER_IMAGE", &image)
                .status()
                .map_err(|e| format!("running {script:?}: {e}"))?;
            if !status.success() {
                return Err(format!("{script:?} failed: {status}"));
            }
            docker(&["image", "inspect", "--format", "{{.Id}}", &image]).map(|_| ())
        })
        .clone()
}

/// True when the test can run: an engine answers and the image exists (built if needed).
/// Otherwise prints a NOTICE saying why the test is skipped (no engine) or panics (the
/// engine is there but the image cannot be built).
/// Who may change Docker networks while a partition is being timed. Creating, removing,
/// connecting and disconnecting networks makes the engine rewrite its isolation rules, and for
/// a moment packets cross (or do not cross) where they should not: a partition test that runs
/// beside other container tests then watches its healed clients flap on a hole another test
/// punched, not on anything the nodes did. The partition tests hold this alone, the others
/// share it.
static NETWORK_CHANGES: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held by a test that times partitions and heals: no other container test runs meanwhile.
pub fn partitions_alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    NETWORK_CHANGES
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Held by every other container test: they run side by side, never beside a partition test.
pub fn alongside_others() -> std::sync::RwLockReadGuard<'static, ()> {
    NETWORK_CHANGES
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn docker_ready(test: &str) -> bool {
    if let Some(why) = engine_missing() {
        eprintln!("NOTICE: skipping {test}: no Docker engine (`docker info`: {why})");
        return false;
    }
    if let Err(e) = image_ready() {
        panic!(
            "{test}: the Docker engine answers but {} cannot be built: {e}",
            image()
        );
    }
    true
}

/// A Docker network of the test's own: `10.201.<octet>.0/24`.
#[derive(Debug, Clone)]
pub struct Net {
    pub name: String,
    pub octet: u8,
}

impl Net {
    /// `10.201.<octet>.<host>`
    pub fn ip(&self, host: u8) -> String {
        format!("10.201.{}.{host}", self.octet)
    }

    /// The gateway: the host's own address on this network (where ports published on it
    /// are reachable from the containers).
    pub fn gateway(&self) -> String {
        self.ip(1)
    }

    /// The loopback address a container at `.host` of this network publishes its API on.
    pub fn http_ip(&self, host: u8) -> String {
        format!("127.201.{}.{host}", self.octet)
    }
}

/// How to start one node container.
#[derive(Debug, Clone, Default)]
pub struct NodeOpts {
    /// `BO_*` variables (BO_NODE_ID and BO_CLUSTER_KEY are set unless given here).
    pub env: Vec<(String, String)>,
    /// Extra `-p` publications (the API's loopback one is always made).
    pub publish: Vec<String>,
    /// A named volume (made by the fleet, removed with it) for the data dir.
    pub volume: Option<String>,
    /// Further networks to attach before the node starts: (network, host part of the IP).
    pub more_networks: Vec<(Net, u8)>,
    /// Extra names on the first network (Docker DNS).
    pub aliases: Vec<String>,
}

impl NodeOpts {
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    pub fn publish(mut self, spec: impl Into<String>) -> Self {
        self.publish.push(spec.into());
        self
    }

    pub fn volume(mut self, name: impl Into<String>) -> Self {
        self.volume = Some(name.into());
        self
    }

    pub fn network(mut self, net: &Net, host: u8) -> Self {
        self.more_networks.push((net.clone(), host));
        self
    }

    pub fn alias(mut self, name: impl Into<String>) -> Self {
        self.aliases.push(name.into());
        self
    }
}

/// A node container: its name, its IP on its first network and its API on loopback.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub container: String,
    pub ip: String,
    pub http: String,
}

/// One SHOW CLUSTER row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub ip: String,
    pub port: u64,
    pub db: String,
    pub source: String,
    pub status: String,
    pub node_id: String,
    pub host: String,
}

impl Row {
    /// The entry this row shows (everything but the live status and host name).
    pub fn entry(&self) -> Entry {
        Entry {
            ip: self.ip.clone(),
            port: self.port,
            db: self.db.clone(),
            source: self.source.clone(),
            node_id: self.node_id.clone(),
        }
    }
}

/// An entry the master acknowledged: (ip, port, db, source, node found there).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub ip: String,
    pub port: u64,
    pub db: String,
    pub source: String,
    pub node_id: String,
}

/// `entry("10.201.3.11", 9091, "log1", "register", "c1")`
pub fn entry(ip: &str, port: u64, db: &str, source: &str, node_id: &str) -> Entry {
    Entry {
        ip: ip.to_string(),
        port,
        db: db.to_string(),
        source: source.to_string(),
        node_id: node_id.to_string(),
    }
}

/// A JSON answer's rows as `column -> value` maps.
pub fn rows_as_maps(body: &Value) -> Vec<serde_json::Map<String, Value>> {
    bocluster::fleet::rows_as_maps(body)
}

fn text(row: &serde_json::Map<String, Value>, column: &str) -> String {
    match row.get(column) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

impl Node {
    /// Runs a statement; (HTTP status, JSON body), or `Err` when the API does not answer.
    pub fn sql(&self, statement: &str) -> Result<(u16, Value), String> {
        match post_statement(&self.http, statement, Duration::from_secs(5)) {
            ApiOutcome::Answered { status, body } => Ok((status, body)),
            ApiOutcome::Unreachable(message) => Err(message),
        }
    }

    /// Runs a statement that must succeed (HTTP 200, retcode 0); panics otherwise.
    pub fn ok(&self, statement: &str) -> Value {
        let (status, body) = self
            .sql(statement)
            .unwrap_or_else(|e| panic!("{statement:?} on {}: {e}", self.id));
        assert!(
            status == 200 && body["retcode"] == 0,
            "{statement:?} on {} answered HTTP {status}: {body}",
            self.id
        );
        body
    }

    /// A statement's rows; `Err` when unreachable or not answered with 200.
    pub fn query(&self, statement: &str) -> Result<Vec<serde_json::Map<String, Value>>, String> {
        let (status, body) = self.sql(statement)?;
        if status != 200 {
            return Err(format!("{statement:?} answered HTTP {status}: {body}"));
        }
        Ok(rows_as_maps(&body))
    }

    /// SHOW CLUSTER, in the node's order.
    pub fn show_cluster(&self) -> Result<Vec<Row>, String> {
        Ok(self
            .query("SHOW CLUSTER")?
            .iter()
            .map(|r| Row {
                ip: text(r, "ip"),
                port: r.get("port").and_then(Value::as_u64).unwrap_or(0),
                db: text(r, "db"),
                source: text(r, "source"),
                status: text(r, "status"),
                node_id: text(r, "node_id"),
                host: text(r, "host"),
            })
            .collect())
    }

    /// SHOW NODES as node_id -> (status, endpoint, generation); `Err` on a duplicate node id.
    pub fn show_nodes(&self) -> Result<BTreeMap<String, (String, String, String)>, String> {
        let rows = self.query("SHOW NODES")?;
        let mut nodes = BTreeMap::new();
        for r in &rows {
            let id = text(r, "node_id");
            let value = (
                text(r, "status"),
                text(r, "endpoint"),
                text(r, "generation"),
            );
            if nodes.insert(id.clone(), value).is_some() {
                return Err(format!("{id} listed twice in SHOW NODES: {rows:?}"));
            }
        }
        Ok(nodes)
    }

    /// Waits until `/health` answers; how long that took.
    pub fn wait_healthy(&self, limit: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let http = self.http.to_string();
        loop {
            if bocluster::fleet::answers_health(&http) {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= limit {
                let state = docker(&["inspect", "-f", "{{.State.Status}}", &self.container])
                    .unwrap_or_default();
                return Err(format!(
                    "{} ({}) not healthy at http://{http}/health after {limit:?} (container {state})",
                    self.id, self.container
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node id the node reports on `/health`.
    pub fn node_id(&self) -> Result<String, String> {
        let url = format!("http://{}/health", self.http);
        let body: Value = ureq::get(&url)
            .call()
            .map_err(|e| format!("{url}: {e}"))?
            .into_body()
            .read_json()
            .map_err(|e| format!("{url}: {e}"))?;
        body["node_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{url} answered {body}"))
    }

    /// The container's main process id on the host (for nsenter).
    pub fn pid(&self) -> String {
        docker_ok(&["inspect", "-f", "{{.State.Pid}}", &self.container])
    }

    /// `docker logs` of the container (stdout and stderr).
    pub fn logs(&self) -> String {
        let out = Command::new("docker")
            .args(["logs", &self.container])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default();
        out
    }
}

/// Polls `check` every [`POLL`] until it returns `Some` or `limit` passes; the value and the
/// time it took.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<(T, Duration)> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Some((value, start.elapsed()));
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// A status that [`check_cluster`] does not check (nor the node found at the entry).
pub const ANY: &str = "*";

/// Compares SHOW CLUSTER rows with the acknowledged entries: every entry exactly once, no
/// other row, and each row's status as `status(entry)` says (unless [`ANY`]). `Err`
/// describes every difference.
pub fn check_cluster(
    rows: &[Row],
    expected: &[Entry],
    status: impl Fn(&Entry) -> &'static str,
) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<(String, u64, String), usize> = BTreeMap::new();
    for row in rows {
        *seen
            .entry((row.ip.clone(), row.port, row.db.clone()))
            .or_default() += 1;
    }
    for (key, count) in &seen {
        if *count > 1 {
            problems.push(format!("duplicated {count} times: {key:?}"));
        }
    }
    for e in expected {
        let want = status(e);
        match rows
            .iter()
            .find(|r| r.ip == e.ip && r.port == e.port && r.db == e.db)
        {
            None => problems.push(format!("lost: {e:?}")),
            Some(r) if r.source != e.source => {
                problems.push(format!("source changed: expected {e:?}, got {r:?}"))
            }
            Some(_) if want == ANY => {}
            Some(r) => {
                if r.node_id != e.node_id {
                    problems.push(format!("node changed: expected {e:?}, got {r:?}"));
                }
                if r.status != want {
                    problems.push(format!(
                        "{}:{} {} is {:?}, not {want:?}",
                        e.ip, e.port, e.db, r.status
                    ));
                }
            }
        }
    }
    for r in rows {
        if !expected
            .iter()
            .any(|e| r.ip == e.ip && r.port == e.port && r.db == e.db)
        {
            problems.push(format!("unexpected row: {r:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Waits until the master's SHOW CLUSTER holds exactly `expected` with the statuses
/// `status(entry)`; how long it took. Panics with the last answer otherwise.
pub fn wait_cluster(
    master: &Node,
    expected: &[Entry],
    status: impl Fn(&Entry) -> &'static str,
    limit: Duration,
    what: &str,
) -> Duration {
    let mut last = String::new();
    let done = wait_for(limit, || match master.show_cluster() {
        Ok(rows) => match check_cluster(&rows, expected, &status) {
            Ok(()) => Some(()),
            Err(e) => {
                last = format!("{e}\nrows: {rows:#?}");
                None
            }
        },
        Err(e) => {
            last = e;
            None
        }
    });
    match done {
        Some(((), took)) => took,
        None => panic!("{what}: not reached within {limit:?}: {last}"),
    }
}

/// Everything `alive`.
pub fn all_alive(_: &Entry) -> &'static str {
    "alive"
}

/// Containers, networks and volumes of one test; all removed on drop.
pub struct Fleet {
    pub name: String,
    pub key: String,
    containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
    nodes: Vec<Node>,
}

impl Fleet {
    /// A fleet named `bo-chaos-<test>-<pid>`, with its own cluster key.
    pub fn new(test: &str) -> Fleet {
        let name = format!("bo-chaos-{test}-{}", std::process::id());
        Fleet {
            key: bocluster::cluster_key::generate_key().expect("a random cluster key"),
            name,
            containers: Vec::new(),
            networks: Vec::new(),
            volumes: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// Creates network `<fleet>-<suffix>` on the first free `10.201.N.0/24`.
    pub fn network(&mut self, suffix: &str) -> Net {
        let name = format!("{}-{suffix}", self.name);
        let start = (std::process::id() as usize * 7 + self.networks.len() * 31) % 250;
        let mut last_error = String::new();
        for i in 0..250 {
            let octet = ((start + i) % 250 + 2) as u8;
            let subnet = format!("10.201.{octet}.0/24");
            let gateway = format!("10.201.{octet}.1");
            let range = format!("10.201.{octet}.128/25");
            match docker(&[
                "network",
                "create",
                "--driver",
                "bridge",
                "--subnet",
                &subnet,
                "--gateway",
                &gateway,
                "--ip-range",
                &range,
                &name,
            ]) {
                Ok(_) => {
                    self.networks.push(name.clone());
                    return Net { name, octet };
                }
                Err(e) if e.contains("overlap") => last_error = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free 10.201.N.0/24 for {name}: {last_error}");
    }

    /// Creates a named volume `<fleet>-<suffix>` (removed with the fleet).
    pub fn volume(&mut self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.name);
        docker_ok(&["volume", "create", &name]);
        self.volumes.push(name.clone());
        name
    }

    /// The container name of node `id`.
    pub fn container(&self, id: &str) -> String {
        format!("{}-{id}", self.name)
    }

    /// Starts container `<fleet>-<id>` (host name `id`) at `.host` of `net`, its API on
    /// `net.http_ip(host):9090`, and waits until the API answers.
    pub fn start(&mut self, id: &str, net: &Net, host: u8, opts: NodeOpts) -> Node {
        let node = self.create(id, net, host, opts);
        docker_ok(&["start", &node.container]);
        node.wait_healthy(DEADLINE).unwrap_or_else(|e| {
            panic!("{e}; its log:\n{}", node.logs());
        });
        node
    }

    /// Creates (does not start) the container [`Fleet::start`] would start.
    pub fn create(&mut self, id: &str, net: &Net, host: u8, opts: NodeOpts) -> Node {
        let container = self.container(id);
        let ip = net.ip(host);
        let http = format!("{}:9090", net.http_ip(host));
        let mut args: Vec<String> = vec![
            "create".into(),
            "--name".into(),
            container.clone(),
            "--hostname".into(),
            id.into(),
            "--network".into(),
            net.name.clone(),
            "--ip".into(),
            ip.clone(),
            "-p".into(),
            format!("{http}:9090"),
        ];
        for alias in &opts.aliases {
            args.extend(["--network-alias".into(), alias.clone()]);
        }
        for p in &opts.publish {
            args.extend(["-p".into(), p.clone()]);
        }
        let mut env = opts.env.clone();
        if !env.iter().any(|(k, _)| k == "BO_NODE_ID") {
            env.push(("BO_NODE_ID".into(), id.into()));
        }
        if !env.iter().any(|(k, _)| k == "BO_CLUSTER_KEY") {
            env.push(("BO_CLUSTER_KEY".into(), self.key.clone()));
        }
        for (k, v) in &env {
            // An empty value means "leave it unset" (e.g. no BO_NODE_ID: generated).
            if !v.is_empty() {
                args.extend(["-e".into(), format!("{k}={v}")]);
            }
        }
        if let Some(volume) = &opts.volume {
            args.extend(["-v".into(), format!("{volume}:/var/lib/bocluster")]);
        }
        args.push(image());
        if !self.containers.contains(&container) {
            self.containers.push(container.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&args);
        for (more, more_host) in &opts.more_networks {
            docker_ok(&[
                "network",
                "connect",
                "--ip",
                &more.ip(*more_host),
                &more.name,
                &container,
            ]);
        }
        let node = Node {
            id: id.to_string(),
            container,
            ip,
            http,
        };
        self.nodes.retain(|n| n.container != node.container);
        self.nodes.push(node.clone());
        node
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in &self.nodes {
                let logs = node.logs();
                let tail: Vec<&str> = logs.lines().rev().take(40).collect();
                eprintln!("---- {} ({}) last log lines ----", node.id, node.container);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(self.containers.iter().map(String::as_str));
            if let Err(e) = docker(&args) {
                if !e.contains("No such container") {
                    eprintln!("cleanup: {e}");
                }
            }
        }
        for network in &self.networks {
            if let Err(e) = docker(&["network", "rm", network]) {
                eprintln!("cleanup: {e}");
            }
        }
        for volume in &self.volumes {
            if let Err(e) = docker(&["volume", "rm", "-f", volume]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}
