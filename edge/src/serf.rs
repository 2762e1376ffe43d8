//! HashiCorp Serf beside bocluster: finding (or installing) it, running `serf agent` on a
//! loopback address with its default LAN settings, and asking an agent what it sees.
//!
//! Agents are asked through Serf's RPC protocol (MessagePack over TCP, the protocol the `serf`
//! command itself uses), over one connection per agent: a `serf members` process per poll
//! costs about 8 ms of CPU, which at 50 agents would both blur the timings and load the 2
//! cores the agents run on. `--serf-cli` polls with `serf members -format=json` instead.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rmpv::Value;

/// Serf's default gossip (memberlist) port, UDP and TCP.
pub const SERF_PORT: u16 = 7946;
/// Serf's default RPC port.
pub const RPC_PORT: u16 = 7373;
/// memberlist's LAN gossip interval (DefaultLANConfig: GossipInterval 200 ms).
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(200);

/// One member as an agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerfMember {
    pub name: String,
    pub addr: String,
    /// `alive`, `leaving`, `left` or `failed`.
    pub status: String,
    pub tags: BTreeMap<String, String>,
}

/// The `serf` binary: on PATH, or installed with apt-get. Returns it and what was done.
pub fn locate_or_install() -> Result<(PathBuf, String), String> {
    if let Some(found) = on_path("serf") {
        return Ok((found.clone(), format!("found {}", found.display())));
    }
    eprintln!("compare: serf is not installed; installing it: apt-get install -y serf");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "serf"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        eprintln!("compare: apt-get install failed; running apt-get update and trying again");
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        if !install() {
            return Err("serf is not installed and `apt-get install -y serf` failed".into());
        }
    }
    let found = on_path("serf").ok_or("apt-get installed serf, but it is not on PATH")?;
    Ok((
        found.clone(),
        format!("installed {} with apt-get install -y serf", found.display()),
    ))
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// First line of `serf version`.
pub fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A running `serf agent` process; killed when dropped.
pub struct SerfAgent {
    pub name: String,
    pub ip: Ipv4Addr,
    child: Option<Child>,
    pub log_path: PathBuf,
}

impl SerfAgent {
    /// `serf agent -bind=ip:7946 -rpc-addr=ip:7373 -node=name [-join=...]`, default LAN
    /// profile, log to `<dir>/<name>.log`.
    pub fn start(
        bin: &Path,
        dir: &Path,
        name: &str,
        ip: Ipv4Addr,
        join: Option<Ipv4Addr>,
    ) -> Result<SerfAgent, String> {
        let log_path = dir.join(format!("{name}.log"));
        let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut command = Command::new(bin);
        command
            .arg("agent")
            .arg(format!("-bind={ip}:{SERF_PORT}"))
            .arg(format!("-rpc-addr={ip}:{RPC_PORT}"))
            .arg(format!("-node={name}"))
            .arg("-log-level=warn");
        if let Some(seed) = join {
            command.arg(format!("-join={seed}:{SERF_PORT}"));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn serf agent: {e}"))?;
        Ok(SerfAgent {
            name: name.to_string(),
            ip,
            child: Some(child),
            log_path,
        })
    }

    pub fn rpc_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), RPC_PORT)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGINT: the agent leaves the cluster gracefully, then exits (Serf's default for an
    /// interrupt; a SIGTERM would not leave). Reaped by [`SerfAgent::kill`] or on drop.
    pub fn interrupt(&self) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGINT,
            );
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Connects to the agent's RPC port, retrying until it answers or `limit` passes.
    pub fn wait_rpc(&mut self, limit: Duration) -> Result<SerfRpc, String> {
        let deadline = Instant::now() + limit;
        loop {
            match SerfRpc::connect(self.rpc_addr()) {
                Ok(rpc) => return Ok(rpc),
                Err(e) => {
                    let exited = self
                        .child
                        .as_mut()
                        .is_none_or(|c| c.try_wait().ok().flatten().is_some());
                    if exited || Instant::now() >= deadline {
                        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
                        return Err(format!(
                            "serf agent {} did not answer RPC ({e}); its log:\n{log}",
                            self.name
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

impl Drop for SerfAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A connection to an agent's RPC port, after the handshake.
pub struct SerfRpc {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    seq: u64,
}

impl SerfRpc {
    pub fn connect(addr: SocketAddr) -> Result<SerfRpc, String> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("serf RPC {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut rpc = SerfRpc {
            reader: BufReader::new(stream),
            writer,
            seq: 0,
        };
        rpc.call(
            "handshake",
            Some(map(vec![("Version", Value::from(1))])),
            false,
        )?;
        Ok(rpc)
    }

    /// Sends a command (header, then the body if any) and reads the answer's header and, when
    /// `has_body`, its body.
    fn call(
        &mut self,
        command: &str,
        body: Option<Value>,
        has_body: bool,
    ) -> Result<Option<Value>, String> {
        let seq = self.seq;
        self.seq += 1;
        let mut buf = Vec::new();
        let header = map(vec![
            ("Command", Value::from(command)),
            ("Seq", Value::from(seq)),
        ]);
        rmpv::encode::write_value(&mut buf, &header).map_err(|e| e.to_string())?;
        if let Some(body) = &body {
            rmpv::encode::write_value(&mut buf, body).map_err(|e| e.to_string())?;
        }
        self.writer
            .write_all(&buf)
            .map_err(|e| format!("serf RPC {command}: {e}"))?;
        let answer = rmpv::decode::read_value(&mut self.reader)
            .map_err(|e| format!("serf RPC {command}: {e}"))?;
        let error = field(&answer, "Error").and_then(text).unwrap_or_default();
        if !error.is_empty() {
            return Err(format!("serf RPC {command}: {error}"));
        }
        if field(&answer, "Seq").and_then(Value::as_u64) != Some(seq) {
            return Err(format!("serf RPC {command}: answer out of sequence"));
        }
        if has_body {
            let body = rmpv::decode::read_value(&mut self.reader)
                .map_err(|e| format!("serf RPC {command}: {e}"))?;
            Ok(Some(body))
        } else {
            Ok(None)
        }
    }

    /// What `serf members` shows.
    pub fn members(&mut self) -> Result<Vec<SerfMember>, String> {
        let body = self.call("members", None, true)?.unwrap_or(Value::Nil);
        members_from_value(&body)
    }

    /// What `serf tags -set key=value` does.
    pub fn set_tag(&mut self, key: &str, value: &str) -> Result<(), String> {
        let tags = map(vec![(key, Value::from(value))]);
        let body = map(vec![("Tags", tags), ("DeleteTags", Value::Array(vec![]))]);
        self.call("tags", Some(body), false).map(|_| ())
    }

    /// What `serf join addr` does: this agent joins the cluster of the agent at `addr`.
    pub fn join(&mut self, addr: SocketAddr) -> Result<(), String> {
        let body = map(vec![
            (
                "Existing",
                Value::Array(vec![Value::from(addr.to_string())]),
            ),
            ("Replay", Value::from(false)),
        ]);
        self.call("join", Some(body), true).map(|_| ())
    }
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value
        .as_map()?
        .iter()
        .find(|(k, _)| text(k).as_deref() == Some(name))
        .map(|(_, v)| v)
}

/// A MessagePack string, or raw bytes holding UTF-8 (Go's codec sends either).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => s.as_str().map(str::to_string),
        Value::Binary(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

/// The members of an RPC `members` answer: `{"Members": [{"Name", "Addr" (IP bytes), "Port",
/// "Tags", "Status", ...}]}`.
pub fn members_from_value(body: &Value) -> Result<Vec<SerfMember>, String> {
    let list = field(body, "Members")
        .and_then(Value::as_array)
        .ok_or("serf RPC members: no Members list")?;
    list.iter()
        .map(|m| {
            let name = field(m, "Name")
                .and_then(text)
                .ok_or("serf RPC members: a member without Name")?;
            let ip = match field(m, "Addr") {
                Some(Value::Binary(b)) if b.len() == 4 => {
                    Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
                }
                Some(Value::Binary(b)) if b.len() == 16 => {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(b);
                    let v6 = Ipv6Addr::from(octets);
                    Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
                }
                Some(other) => text(other).and_then(|s| s.parse().ok()),
                None => None,
            };
            let port = field(m, "Port").and_then(Value::as_u64).unwrap_or(0);
            let tags = field(m, "Tags")
                .and_then(Value::as_map)
                .map(|pairs| {
                    pairs
                        .iter()
                        .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
                        .collect()
                })
                .unwrap_or_default();
            Ok(SerfMember {
                name,
                addr: ip.map_or_else(String::new, |ip| format!("{ip}:{port}")),
                status: field(m, "Status").and_then(text).unwrap_or_default(),
                tags,
            })
        })
        .collect()
}

/// The members in `serf members -format=json` output.
pub fn parse_members_json(text: &str) -> Result<Vec<SerfMember>, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("serf members: not JSON: {e}"))?;
    let list = json
        .get("members")
        .and_then(serde_json::Value::as_array)
        .ok_or("serf members: no \"members\" list")?;
    list.iter()
        .map(|m| {
            let s = |key: &str| m.get(key).and_then(serde_json::Value::as_str);
            Ok(SerfMember {
                name: s("name")
                    .ok_or("serf members: a member without a name")?
                    .to_string(),
                addr: s("addr").unwrap_or_default().to_string(),
                status: s("status").unwrap_or_default().to_string(),
                tags: m
                    .get("tags")
                    .and_then(serde_json::Value::as_object)
                    .map(|t| {
                        t.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// `serf members -rpc-addr=addr -format=json`, parsed.
pub fn members_cli(bin: &Path, rpc: SocketAddr) -> Result<Vec<SerfMember>, String> {
    let out = Command::new(bin)
        .args(["members", &format!("-rpc-addr={rpc}"), "-format=json"])
        .output()
        .map_err(|e| format!("serf members: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "serf members -rpc-addr={rpc}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_members_json(&String::from_utf8_lossy(&out.stdout))
}

/// `serf tags -rpc-addr=addr -set key=value`.
pub fn set_tag_cli(bin: &Path, rpc: SocketAddr, key: &str, value: &str) -> Result<(), String> {
    let out = Command::new(bin)
        .args([
            "tags",
            &format!("-rpc-addr={rpc}"),
            "-set",
            &format!("{key}={value}"),
        ])
        .output()
        .map_err(|e| format!("serf tags: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "serf tags: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_serf_members_json() {
        let text = r#"{
  "members": [
    {"name": "serf-1", "addr": "127.0.222.1:7946", "port": 7946, "tags": {},
     "status": "alive", "protocol": {"max": 5, "min": 2, "version": 5}},
    {"name": "serf-2", "addr": "127.0.222.2:7946", "port": 7946,
     "tags": {"bench": "chg0", "role": "x"}, "status": "failed",
     "protocol": {"max": 5, "min": 2, "version": 5}}
  ]
}"#;
        let members = parse_members_json(text).unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].name, "serf-1");
        assert_eq!(members[0].addr, "127.0.222.1:7946");
        assert_eq!(members[0].status, "alive");
        assert!(members[0].tags.is_empty());
        assert_eq!(members[1].status, "failed");
        assert_eq!(members[1].tags["bench"], "chg0");
        assert_eq!(members[1].tags.len(), 2);
        assert!(parse_members_json("{}").is_err());
        assert!(parse_members_json("members:").is_err());
        assert!(parse_members_json(r#"{"members": [{"addr": "x"}]}"#).is_err());
    }

    /// An answer body as Serf's Go codec writes it: field names as strings, the address as
    /// the raw IP bytes (4 or 16 of them).
    #[test]
    fn decodes_an_rpc_members_answer() {
        let member = |name: &str, addr: Vec<u8>, status: &str, tags: Vec<(&str, &str)>| {
            map(vec![
                ("Name", Value::from(name)),
                ("Addr", Value::Binary(addr)),
                ("Port", Value::from(7946)),
                (
                    "Tags",
                    Value::Map(
                        tags.into_iter()
                            .map(|(k, v)| (Value::from(k), Value::from(v)))
                            .collect(),
                    ),
                ),
                ("Status", Value::from(status)),
                ("ProtocolMin", Value::from(1)),
            ])
        };
        let mapped = Ipv4Addr::new(127, 0, 222, 2)
            .to_ipv6_mapped()
            .octets()
            .to_vec();
        let body = map(vec![(
            "Members",
            Value::Array(vec![
                member("a", vec![127, 0, 222, 1], "alive", vec![]),
                member("b", mapped, "failed", vec![("bench", "chg1")]),
            ]),
        )]);
        // Through the wire format and back, as it arrives.
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &body).unwrap();
        let decoded = rmpv::decode::read_value(&mut &bytes[..]).unwrap();
        let members = members_from_value(&decoded).unwrap();
        assert_eq!(
            members,
            vec![
                SerfMember {
                    name: "a".into(),
                    addr: "127.0.222.1:7946".into(),
                    status: "alive".into(),
                    tags: BTreeMap::new(),
                },
                SerfMember {
                    name: "b".into(),
                    addr: "127.0.222.2:7946".into(),
                    status: "failed".into(),
                    tags: [("bench".to_string(), "chg1".to_string())].into(),
                },
            ]
        );
        assert!(members_from_value(&Value::Nil).is_err());
    }

    #[test]
    fn rpc_strings_may_arrive_as_bytes() {
        assert_eq!(text(&Value::Binary(b"alive".to_vec())).unwrap(), "alive");
        assert_eq!(text(&Value::from("left")).unwrap(), "left");
        assert_eq!(text(&Value::from(3)), None);
    }
}
