//! Real `bocluster node` processes on this machine, each on its own loopback address.
//!
//! Used by `bocluster demo`, the integration tests and the edge harness, so they all start,
//! stop and query nodes the same way. Every process started here is killed when its
//! [`LocalNode`] is dropped, also when a test fails.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use crate::client::{api_agent, post_statement_on, post_statement_with, ApiOutcome};
use crate::config::{DEFAULT_HTTP_PORT, DEFAULT_QUIC_PORT};

/// How to start one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub node_id: String,
    /// Loopback address of its own: QUIC on :9091 and HTTP on :9090.
    pub ip: IpAddr,
    pub data_dir: PathBuf,
    /// Extra `BO_*` variables (seeds, databases, key, ...).
    pub env: Vec<(String, String)>,
}

/// A running (or stopped) node process.
pub struct LocalNode {
    pub spec: NodeSpec,
    exe: PathBuf,
    child: Option<Child>,
    pub log_path: PathBuf,
}

impl LocalNode {
    /// Starts `exe node` as described by `spec`; output goes to `<data_dir>.log`.
    pub fn start(exe: &Path, spec: NodeSpec) -> std::io::Result<LocalNode> {
        let log_path = spec.data_dir.with_extension("log");
        let mut node = LocalNode {
            spec,
            exe: exe.to_path_buf(),
            child: None,
            log_path,
        };
        node.restart()?;
        Ok(node)
    }

    /// Starts the process again (after a stop or kill) with the same spec.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut command = Command::new(&self.exe);
        command
            .arg("node")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BO_NODE_ID", &self.spec.node_id)
            .env("BO_LISTEN", self.quic_addr().to_string())
            .env("BO_HTTP", self.http_addr().to_string())
            .env("BO_DATA_DIR", &self.spec.data_dir)
            .env("BO_LOG", "info")
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(command.spawn()?);
        Ok(())
    }

    pub fn quic_addr(&self) -> SocketAddr {
        SocketAddr::new(self.spec.ip, DEFAULT_QUIC_PORT)
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::new(self.spec.ip, DEFAULT_HTTP_PORT)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends a signal (SIGTERM for a clean stop, SIGKILL for a crash, SIGSTOP/SIGCONT...).
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    }

    /// SIGTERM, then waits up to `limit` for the process to exit (SIGKILL after that).
    /// Returns whether it exited by itself.
    pub fn stop(&mut self, limit: Duration) -> bool {
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.has_exited() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process has exited (and its exit status if so).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) | None => true,
            Some(Ok(None)) => false,
            Some(Err(_)) => true,
        }
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return status.code();
                }
            } else {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The node's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs a statement on this node (with its `BO_API_TOKEN`, if its spec sets one). `Err`
    /// when it cannot be reached.
    pub fn sql(&self, statement: &str) -> Result<(u16, Value), String> {
        answer(post_statement_with(
            &self.http_addr().to_string(),
            statement,
            API_TIMEOUT,
            self.token(),
        ))
    }

    /// The value of one unlabelled sample of this node's `/metrics` (a counter's
    /// `name_total`, a gauge's `name`). `Err` when it cannot be read.
    pub fn metric(&self, name: &str) -> Result<f64, String> {
        let url = format!("http://{}/metrics", self.http_addr());
        let mut request = api_agent(API_TIMEOUT).get(&url);
        if let Some(token) = self.token() {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let text = request
            .call()
            .and_then(|response| response.into_body().read_to_string())
            .map_err(|e| format!("cannot read {url}: {e}"))?;
        text.lines()
            .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|value| value.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("{url} has no sample {name}"))
    }

    /// [`LocalNode::sql`] over `session`'s open connection.
    pub fn sql_in(&self, session: &ApiSession, statement: &str) -> Result<(u16, Value), String> {
        let url = format!("http://{}/api", self.http_addr());
        answer(post_statement_on(
            &session.agent,
            &url,
            &url,
            statement,
            self.token(),
        ))
    }

    fn token(&self) -> Option<&str> {
        self.spec
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "BO_API_TOKEN")
            .map(|(_, v)| v.as_str())
    }

    /// Runs a statement that must succeed; returns its rows as maps column -> value.
    pub fn query(&self, statement: &str) -> Result<Vec<serde_json::Map<String, Value>>, String> {
        rows_of(statement, self.sql(statement)?)
    }

    /// [`LocalNode::query`] over `session`'s open connection.
    pub fn query_in(
        &self,
        session: &ApiSession,
        statement: &str,
    ) -> Result<Vec<serde_json::Map<String, Value>>, String> {
        rows_of(statement, self.sql_in(session, statement)?)
    }

    /// Waits until `/health` answers, or the process exits, or `limit` passes.
    pub fn wait_healthy(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let http = self.http_addr().to_string();
        loop {
            if answers_health(&http) {
                return Ok(());
            }
            if self.has_exited() {
                return Err(format!(
                    "node {} exited before it was healthy; its log:\n{}",
                    self.spec.node_id,
                    self.log()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "node {} not healthy after {limit:?}; its log:\n{}",
                    self.spec.node_id,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// How long one statement sent to a node may take.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client that keeps its connections to nodes' APIs open between statements, for a
/// caller that asks one node many times in a row (as Serf's RPC client keeps one connection):
/// each question then costs a request, not a TCP handshake and a new client.
pub struct ApiSession {
    agent: ureq::Agent,
}

impl Default for ApiSession {
    fn default() -> Self {
        ApiSession {
            agent: api_agent(API_TIMEOUT),
        }
    }
}

fn answer(outcome: ApiOutcome) -> Result<(u16, Value), String> {
    match outcome {
        ApiOutcome::Answered { status, body } => Ok((status, body)),
        ApiOutcome::Unreachable(message) => Err(message),
    }
}

fn rows_of(
    statement: &str,
    (status, body): (u16, Value),
) -> Result<Vec<serde_json::Map<String, Value>>, String> {
    if status != 200 {
        return Err(format!("{statement:?} answered HTTP {status}: {body}"));
    }
    Ok(rows_as_maps(&body))
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the node whose HTTP API is at `http` (`ip:port`) answers `/health` within 2 s.
pub fn answers_health(http: &str) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent.get(&format!("http://{http}/health")).call().is_ok()
}

/// A JSON answer's rows as `column -> value` maps.
pub fn rows_as_maps(body: &Value) -> Vec<serde_json::Map<String, Value>> {
    let columns: Vec<String> = body
        .get("columns")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    body.get("results")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .filter_map(Value::as_array)
                .map(|row| columns.iter().cloned().zip(row.iter().cloned()).collect())
                .collect()
        })
        .unwrap_or_default()
}

/// Column `column` of `node_id`'s row in `observer`'s SHOW NODES, if listed.
pub fn node_column(observer: &LocalNode, node_id: &str, column: &str) -> Option<String> {
    observer
        .query("SHOW NODES")
        .ok()?
        .into_iter()
        .find(|row| row.get("node_id").and_then(Value::as_str) == Some(node_id))?
        .get(column)?
        .as_str()
        .map(str::to_string)
}

/// The status of `node_id` in `observer`'s SHOW NODES, if listed.
pub fn node_status(observer: &LocalNode, node_id: &str) -> Option<String> {
    node_column(observer, node_id, "status")
}

/// Polls `check` every 50 ms until it returns `Some`, or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
