//! Every `BO_*` setting, parsed and validated once into a typed [`NodeConfig`].
//!
//! clap reads each value from its `--flag` or, when the flag is absent, from its environment
//! variable. Values arrive here as raw strings so that a bad one is reported by *our* message,
//! which names the variable, the flag and the value, and says what was expected.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::ApiToken;
use crate::cluster_key::ClusterKeys;
use crate::db_name::DatabaseName;
use crate::membership::{Profile, Timings};

/// Port of the QUIC (UDP) endpoint every node listens on by default.
pub const DEFAULT_QUIC_PORT: u16 = 9091;
/// Port of the HTTP statement API.
pub const DEFAULT_HTTP_PORT: u16 = 9090;
/// The shortest `BO_DEAD_NODE_GRACE`: a dead node must be seen `dead` before it is forgotten.
pub const MIN_DEAD_NODE_GRACE: Duration = Duration::from_secs(10);

/// Settings of the chitchat engine that no longer exist, and what replaced them: a node
/// started with one of them set refuses to start and says so.
pub const REMOVED_SETTINGS: [(&str, &str); 2] = [
    (
        "BO_GOSSIP_INTERVAL",
        "BO_PROBE_INTERVAL (each node probes one peer per interval; changes ride on the probes)",
    ),
    (
        "BO_PHI_THRESHOLD",
        "BO_SUSPECT_TIMEOUT (how long a suspected node has to refute before it is dead)",
    ),
];

/// The raw settings, as clap reads them from flags and environment variables.
#[derive(Debug, Default, Clone, Args)]
pub struct NodeArgs {
    /// QUIC (UDP) bind address for all node-to-node traffic [default: 0.0.0.0:9091]
    #[arg(long, env = "BO_LISTEN", value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// Address other nodes dial to reach this node (its exposed 9091)
    /// [default: the listen address if specific, else the first non-loopback interface]
    #[arg(long, env = "BO_ENDPOINT", value_name = "IP:PORT")]
    pub endpoint: Option<String>,
    /// HTTP API bind address [default: the listen host, port 9090]
    #[arg(long, env = "BO_HTTP", value_name = "IP:PORT")]
    pub http: Option<String>,
    /// Where the node keeps its identity, databases and cluster state [default: ./bo-data]
    #[arg(long, env = "BO_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<String>,
    /// This node's name in the cluster [default: generated once, kept in the data dir]
    #[arg(long, env = "BO_NODE_ID", value_name = "NAME")]
    pub node_id: Option<String>,
    /// Comma list of databases created at start if missing
    #[arg(long, env = "BO_DATABASES", value_name = "NAMES")]
    pub databases: Option<String>,
    /// Comma list of host[:port] gossip peers to join through
    #[arg(long, env = "BO_SEEDS", value_name = "PEERS")]
    pub seeds: Option<String>,
    /// Masters to register all databases with: host[:port][;host[:port]...] (port 9091)
    #[arg(long, env = "BO_MASTER", value_name = "MASTERS")]
    pub master: Option<String>,
    /// Cluster keys, comma-separated (make one with `bocluster keygen`); the first signs, all
    /// are accepted; only nodes with a key in common can talk [default: none, open cluster]
    #[arg(
        long,
        env = "BO_CLUSTER_KEY",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub cluster_key: Option<String>,
    /// Bearer token the HTTP API requires (GET /health stays open) [default: none, open API]
    #[arg(
        long,
        env = "BO_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub api_token: Option<String>,
    /// Log filter, tracing EnvFilter syntax [default: info]
    #[arg(long, env = "BO_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Membership timings made for a network: lan or wan (cellular edge links) [default: lan]
    #[arg(long, env = "BO_PROFILE", value_name = "lan|wan")]
    pub profile: Option<String>,
    /// How often each node probes one peer [default: 1s (lan), 2s (wan)]
    #[arg(long, env = "BO_PROBE_INTERVAL", value_name = "DURATION")]
    pub probe_interval: Option<String>,
    /// How long a probe waits for its direct answer [default: 400ms (lan), 900ms (wan)]
    #[arg(long, env = "BO_PROBE_TIMEOUT", value_name = "DURATION")]
    pub probe_timeout: Option<String>,
    /// How long a suspected node that has gone silent has to refute before it is dead, up to
    /// 10 nodes (x log10 N beyond) [default: 3s (lan), 5s (wan)]
    #[arg(long, env = "BO_SUSPECT_TIMEOUT", value_name = "DURATION")]
    pub suspect_timeout: Option<String>,
    /// The same for a suspected node whose host answers that nothing listens on its port (its
    /// process is gone), at most BO_SUSPECT_TIMEOUT [default: 1s (lan), 2s (wan)]
    #[arg(long, env = "BO_PORT_CLOSED_TIMEOUT", value_name = "DURATION")]
    pub port_closed_timeout: Option<String>,
    /// How often records are compared with one random peer [default: 10s (lan), 30s (wan)]
    #[arg(long, env = "BO_ANTI_ENTROPY_INTERVAL", value_name = "DURATION")]
    pub anti_entropy_interval: Option<String>,
    /// How long a dead node stays listed before it is forgotten (at least 10s) [default: 1h]
    #[arg(long, env = "BO_DEAD_NODE_GRACE", value_name = "DURATION")]
    pub dead_node_grace: Option<String>,
    /// Removed (see BO_PROBE_INTERVAL)
    #[arg(long, env = "BO_GOSSIP_INTERVAL", hide = true)]
    pub gossip_interval: Option<String>,
    /// Removed (see BO_SUSPECT_TIMEOUT)
    #[arg(long, env = "BO_PHI_THRESHOLD", hide = true)]
    pub phi_threshold: Option<String>,
    /// MySQL protocol bind address, or `off` [default: the listen host, port 3306]
    #[arg(long, env = "BO_MYSQL", value_name = "IP:PORT|off")]
    pub mysql: Option<String>,
    /// Log line format: `text` or `json` (one JSON object per line) [default: text]
    #[arg(long, env = "BO_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Program run once per cluster event, event in BO_EVENT_* variables and JSON on stdin
    #[arg(long, env = "BO_EVENT_HANDLER", value_name = "PATH")]
    pub event_handler: Option<String>,
    /// How long one run of the event handler may take before it is killed [default: 10s]
    #[arg(long, env = "BO_EVENT_HANDLER_TIMEOUT", value_name = "DURATION")]
    pub event_handler_timeout: Option<String>,
}

/// Port of the MySQL protocol listener.
pub const DEFAULT_MYSQL_PORT: u16 = 3306;
/// How long one run of `BO_EVENT_HANDLER` may take.
pub const DEFAULT_EVENT_HANDLER_TIMEOUT: Duration = Duration::from_secs(10);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (coloured at a terminal).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A setting that failed validation, named the way a user set it.
#[derive(Debug, thiserror::Error)]
#[error("invalid value {value:?} for {var} (--{flag}): {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

/// A validated node configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    pub endpoint: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub node_id: Option<String>,
    pub databases: Vec<DatabaseName>,
    pub seeds: Vec<String>,
    /// Masters this node registers with, as `host:port`.
    pub masters: Vec<String>,
    /// `BO_CLUSTER_KEY`, or the open default when it is not set.
    pub cluster_key: ClusterKeys,
    /// The token the HTTP API requires; `None` leaves it open.
    pub api_token: Option<ApiToken>,
    pub log: String,
    /// Membership timings (profile defaults, overridden by the BO_* timing settings).
    pub timings: Timings,
    /// Where the MySQL protocol is served; `None` when `BO_MYSQL=off`.
    pub mysql: Option<SocketAddr>,
    pub log_format: LogFormat,
    pub event_handler: Option<PathBuf>,
    pub event_handler_timeout: Duration,
}

fn invalid(
    var: &'static str,
    flag: &'static str,
    value: &str,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError {
        var,
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// What an error shows of a secret: nothing but its length (an empty value is shown as is).
fn hidden(secret: &str) -> String {
    if secret.is_empty() {
        String::new()
    } else {
        let count = secret.chars().count();
        let plural = if count == 1 { "" } else { "s" };
        format!("<not shown: {count} character{plural}>")
    }
}

impl NodeConfig {
    /// Validates every setting; the first bad one is returned as an error.
    pub fn from_args(args: &NodeArgs) -> Result<NodeConfig, ConfigError> {
        let listen = match &args.listen {
            Some(v) => {
                let addr =
                    parse_socket_addr(v).map_err(|r| invalid("BO_LISTEN", "listen", v, r))?;
                if addr.port() == 0 {
                    return Err(invalid(
                        "BO_LISTEN",
                        "listen",
                        v,
                        "port 0 would pick a random port that peers and BO_ENDPOINT cannot know; give a port, e.g. 9091",
                    ));
                }
                addr
            }
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_QUIC_PORT),
        };
        let endpoint = match &args.endpoint {
            Some(v) => {
                let addr =
                    parse_socket_addr(v).map_err(|r| invalid("BO_ENDPOINT", "endpoint", v, r))?;
                if addr.ip().is_unspecified() {
                    return Err(invalid(
                        "BO_ENDPOINT",
                        "endpoint",
                        v,
                        "must be an address other nodes can dial, not an unspecified address",
                    ));
                }
                if addr.port() == 0 {
                    return Err(invalid(
                        "BO_ENDPOINT",
                        "endpoint",
                        v,
                        "must be an address other nodes can dial, and no node can be dialled on port 0",
                    ));
                }
                addr
            }
            None => default_endpoint(listen),
        };
        let http = match &args.http {
            Some(v) => parse_socket_addr(v).map_err(|r| invalid("BO_HTTP", "http", v, r))?,
            None => SocketAddr::new(listen.ip(), DEFAULT_HTTP_PORT),
        };
        let data_dir = match &args.data_dir {
            Some(v) if v.trim().is_empty() => {
                return Err(invalid("BO_DATA_DIR", "data-dir", v, "must not be empty"))
            }
            Some(v) => PathBuf::from(v),
            None => PathBuf::from("./bo-data"),
        };
        let node_id = match &args.node_id {
            Some(v) => {
                validate_node_id(v).map_err(|r| invalid("BO_NODE_ID", "node-id", v, r))?;
                Some(v.clone())
            }
            None => None,
        };
        let databases = match &args.databases {
            Some(v) => {
                parse_database_list(v).map_err(|r| invalid("BO_DATABASES", "databases", v, r))?
            }
            None => Vec::new(),
        };
        let seeds = match &args.seeds {
            Some(v) => parse_peer_list(v).map_err(|r| invalid("BO_SEEDS", "seeds", v, r))?,
            None => Vec::new(),
        };
        let masters = match &args.master {
            Some(v) => {
                let list = v.replace(';', ",");
                parse_peer_list(&list).map_err(|r| invalid("BO_MASTER", "master", v, r))?
            }
            None => Vec::new(),
        };
        let cluster_key = match &args.cluster_key {
            // The error names the variable and the key's position, never the key itself.
            Some(v) => ClusterKeys::parse(v)
                .map_err(|e| invalid("BO_CLUSTER_KEY", "cluster-key", &hidden(v), e.to_string()))?,
            None => ClusterKeys::open_default(),
        };
        let api_token = match &args.api_token {
            // The value is never echoed: it is a secret.
            Some(v) => Some(
                ApiToken::new(v)
                    .map_err(|e| invalid("BO_API_TOKEN", "api-token", "<hidden>", e.to_string()))?,
            ),
            None => None,
        };
        let log = match &args.log {
            Some(v) => {
                tracing_subscriber::EnvFilter::try_new(v)
                    .map_err(|e| invalid("BO_LOG", "log", v, e.to_string()))?;
                v.clone()
            }
            None => "info".to_string(),
        };
        for (removed, value) in [
            (REMOVED_SETTINGS[0], &args.gossip_interval),
            (REMOVED_SETTINGS[1], &args.phi_threshold),
        ] {
            if let Some(v) = value {
                return Err(ConfigError {
                    var: removed.0,
                    flag: if removed.0 == "BO_GOSSIP_INTERVAL" {
                        "gossip-interval"
                    } else {
                        "phi-threshold"
                    },
                    value: v.clone(),
                    reason: format!(
                        "this setting was removed with the chitchat engine; use {} instead",
                        removed.1
                    ),
                });
            }
        }
        let timings = parse_timings(args)?;
        let mysql = match args.mysql.as_deref().map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("off") => None,
            Some(v) => Some(parse_socket_addr(v).map_err(|r| {
                invalid("BO_MYSQL", "mysql", v, format!("{r}, or off to disable it"))
            })?),
            None => Some(SocketAddr::new(listen.ip(), DEFAULT_MYSQL_PORT)),
        };
        let log_format = match args.log_format.as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(v) => {
                return Err(invalid(
                    "BO_LOG_FORMAT",
                    "log-format",
                    v,
                    "expected text or json",
                ))
            }
        };
        let event_handler = match &args.event_handler {
            Some(v) if v.trim().is_empty() => None,
            Some(v) => {
                let path = PathBuf::from(v);
                let executable = std::fs::metadata(&path)
                    .map_err(|e| invalid("BO_EVENT_HANDLER", "event-handler", v, e.to_string()))?;
                if !executable.is_file()
                    || std::os::unix::fs::PermissionsExt::mode(&executable.permissions()) & 0o111
                        == 0
                {
                    return Err(invalid(
                        "BO_EVENT_HANDLER",
                        "event-handler",
                        v,
                        "must be an executable file",
                    ));
                }
                Some(path)
            }
            None => None,
        };
        let event_handler_timeout = match &args.event_handler_timeout {
            Some(v) => {
                let d = parse_duration(v).map_err(|r| {
                    invalid("BO_EVENT_HANDLER_TIMEOUT", "event-handler-timeout", v, r)
                })?;
                if d.is_zero() {
                    return Err(invalid(
                        "BO_EVENT_HANDLER_TIMEOUT",
                        "event-handler-timeout",
                        v,
                        "must be longer than zero",
                    ));
                }
                d
            }
            None => DEFAULT_EVENT_HANDLER_TIMEOUT,
        };
        Ok(NodeConfig {
            listen,
            endpoint,
            http,
            data_dir,
            node_id,
            databases,
            seeds,
            masters,
            cluster_key,
            api_token,
            log,
            timings,
            mysql,
            log_format,
            event_handler,
            event_handler_timeout,
        })
    }
}

/// The profile's timings with every override applied and checked against the others.
fn parse_timings(args: &NodeArgs) -> Result<Timings, ConfigError> {
    let profile = match &args.profile {
        Some(v) => Profile::parse(v)
            .ok_or_else(|| invalid("BO_PROFILE", "profile", v, "expected lan or wan"))?,
        None => Profile::Lan,
    };
    let mut timings = profile.timings();
    let duration = |value: &Option<String>,
                    var: &'static str,
                    flag: &'static str,
                    min: Duration,
                    max: Duration|
     -> Result<Option<Duration>, ConfigError> {
        let Some(v) = value else {
            return Ok(None);
        };
        let d = parse_duration(v).map_err(|r| invalid(var, flag, v, r))?;
        if d < min || d > max {
            return Err(invalid(
                var,
                flag,
                v,
                format!(
                    "must be between {} and {}",
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ),
            ));
        }
        Ok(Some(d))
    };
    let ms = Duration::from_millis;
    let s = Duration::from_secs;
    if let Some(d) = duration(
        &args.probe_interval,
        "BO_PROBE_INTERVAL",
        "probe-interval",
        ms(20),
        s(60),
    )? {
        timings.probe_interval = d;
    }
    if let Some(d) = duration(
        &args.probe_timeout,
        "BO_PROBE_TIMEOUT",
        "probe-timeout",
        ms(5),
        s(30),
    )? {
        timings.probe_timeout = d;
    } else if timings.probe_timeout >= timings.probe_interval {
        timings.probe_timeout = timings.probe_interval * 3 / 8;
    }
    if let Some(d) = duration(
        &args.suspect_timeout,
        "BO_SUSPECT_TIMEOUT",
        "suspect-timeout",
        ms(20),
        s(600),
    )? {
        timings.suspect_timeout = d;
    }
    if let Some(d) = duration(
        &args.port_closed_timeout,
        "BO_PORT_CLOSED_TIMEOUT",
        "port-closed-timeout",
        ms(20),
        s(600),
    )? {
        timings.port_closed_timeout = d;
    }
    if let Some(d) = duration(
        &args.anti_entropy_interval,
        "BO_ANTI_ENTROPY_INTERVAL",
        "anti-entropy-interval",
        ms(100),
        s(3600),
    )? {
        timings.anti_entropy_interval = d;
    }
    if let Some(d) = duration(
        &args.dead_node_grace,
        "BO_DEAD_NODE_GRACE",
        "dead-node-grace",
        MIN_DEAD_NODE_GRACE,
        s(30 * 24 * 3600),
    )? {
        timings.dead_node_grace = d;
    }
    if timings.probe_timeout >= timings.probe_interval {
        let v = args.probe_timeout.clone().unwrap_or_default();
        return Err(invalid(
            "BO_PROBE_TIMEOUT",
            "probe-timeout",
            &v,
            format!(
                "must be shorter than BO_PROBE_INTERVAL ({}): the rest of the interval is left for indirect probes",
                humantime::format_duration(timings.probe_interval)
            ),
        ));
    }
    Ok(timings)
}

/// `ip:port`, IPv6 in brackets.
pub fn parse_socket_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .trim()
        .parse::<SocketAddr>()
        .map_err(|_| "expected ip:port, e.g. 127.0.0.1:9091 or [::1]:9091".to_string())
}

/// A duration such as `250ms`, `2s` or `1m`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim())
        .map_err(|e| format!("expected a duration such as 250ms, 2s or 1m ({e})"))
}

/// Node ids appear in logs, URLs and gossip keys: keep them printable and short.
pub fn validate_node_id(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 128 {
        return Err("must be 1 to 128 characters long".to_string());
    }
    if value.chars().all(|c| c == '.') {
        return Err(
            "must contain a letter, digit, '_' or '-' (dots alone name directories, not nodes)"
                .to_string(),
        );
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "contains {bad:?}; only letters, digits, '_', '-' and '.' are allowed"
        ));
    }
    Ok(())
}

/// `log1,log2`: comma separated, blanks around names ignored, empty items rejected.
pub fn parse_database_list(value: &str) -> Result<Vec<DatabaseName>, String> {
    let mut names = Vec::new();
    for item in value.split(',') {
        let item = item.trim();
        if item.is_empty() && value.trim().is_empty() {
            break;
        }
        let name = DatabaseName::new(item).map_err(|e| e.to_string())?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// `host[:port]` items, comma separated; the port defaults to 9091. Returned as `host:port`
/// strings so DNS names are resolved when dialled (and again later), not once at start.
pub fn parse_peer_list(value: &str) -> Result<Vec<String>, String> {
    let mut peers = Vec::new();
    for item in value.split(',') {
        let item = item.trim();
        if item.is_empty() {
            if value.trim().is_empty() {
                break;
            }
            return Err("contains an empty item".to_string());
        }
        peers.push(parse_host_port(item, DEFAULT_QUIC_PORT)?);
    }
    Ok(peers)
}

/// `host`, `host:port`, `ip`, `ip:port`, `[v6]`, `[v6]:port` or a bare IPv6 -> `host:port`.
pub fn parse_host_port(item: &str, default_port: u16) -> Result<String, String> {
    if let Ok(addr) = item.parse::<SocketAddr>() {
        return Ok(addr.to_string());
    }
    if let Ok(ip) = item.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port).to_string());
    }
    if let Some(inner) = item.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        let ip: IpAddr = inner
            .parse()
            .map_err(|_| format!("{item:?} is not a valid IPv6 address"))?;
        return Ok(SocketAddr::new(ip, default_port).to_string());
    }
    let (host, port) = match item.rsplit_once(':') {
        Some((host, port)) => {
            let port: u16 = port
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{item:?} has an invalid port (expected 1-65535)"))?;
            (host, port)
        }
        None => (item, default_port),
    };
    validate_dns_name(host).map_err(|r| format!("{item:?}: {r}"))?;
    Ok(format!("{host}:{port}"))
}

/// RFC 1123 host names: labels of letters, digits and '-', 1-63 characters each.
pub fn validate_dns_name(host: &str) -> Result<(), String> {
    if host.is_empty() || host.len() > 253 {
        return Err("host name must be 1 to 253 characters".to_string());
    }
    if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("{host:?} is not a valid IPv4 address"));
    }
    for label in host.trim_end_matches('.').split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(format!("{host:?} is not a valid host name"));
        }
    }
    Ok(())
}

/// The listen address if it is specific, else the first non-loopback interface address with
/// the listen port (what a peer on another host could dial), else loopback.
fn default_endpoint(listen: SocketAddr) -> SocketAddr {
    if !listen.ip().is_unspecified() {
        return listen;
    }
    let want_v4 = listen.is_ipv4();
    let found = if_addrs::get_if_addrs().ok().and_then(|addrs| {
        addrs
            .into_iter()
            .map(|iface| iface.ip())
            .find(|ip| !ip.is_loopback() && ip.is_ipv4() == want_v4)
    });
    let ip = found.unwrap_or(if want_v4 {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
    });
    SocketAddr::new(ip, listen.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> NodeArgs {
        NodeArgs::default()
    }

    #[test]
    fn mysql_log_format_and_event_handler_settings() {
        let cfg = NodeConfig::from_args(&NodeArgs {
            listen: Some("127.0.0.7:9091".into()),
            ..args()
        })
        .unwrap();
        assert_eq!(cfg.mysql, Some("127.0.0.7:3306".parse().unwrap()));
        assert_eq!(cfg.log_format, LogFormat::Text);
        assert_eq!(cfg.event_handler, None);
        assert_eq!(cfg.event_handler_timeout, DEFAULT_EVENT_HANDLER_TIMEOUT);
        let cfg = NodeConfig::from_args(&NodeArgs {
            mysql: Some("OFF".into()),
            log_format: Some("json".into()),
            event_handler: Some("/bin/sh".into()),
            event_handler_timeout: Some("2s".into()),
            ..args()
        })
        .unwrap();
        assert_eq!(cfg.mysql, None);
        assert_eq!(cfg.log_format, LogFormat::Json);
        assert_eq!(cfg.event_handler, Some(PathBuf::from("/bin/sh")));
        assert_eq!(cfg.event_handler_timeout, Duration::from_secs(2));
    }

    #[test]
    fn defaults_follow_the_listen_address() {
        let cfg = NodeConfig::from_args(&NodeArgs {
            listen: Some("127.0.0.7:9091".into()),
            ..args()
        })
        .unwrap();
        assert_eq!(cfg.endpoint, "127.0.0.7:9091".parse().unwrap());
        assert_eq!(cfg.http, "127.0.0.7:9090".parse().unwrap());
        assert_eq!(cfg.data_dir, PathBuf::from("./bo-data"));
        assert_eq!(cfg.timings, Timings::default());
        assert_eq!(cfg.log, "info");
        assert!(cfg.cluster_key.is_open());
    }

    #[test]
    fn unspecified_listen_gives_a_dialable_endpoint() {
        let cfg = NodeConfig::from_args(&args()).unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:9091".parse().unwrap());
        assert!(!cfg.endpoint.ip().is_unspecified());
        assert_eq!(cfg.endpoint.port(), 9091);
        assert_eq!(cfg.http, "0.0.0.0:9090".parse().unwrap());
    }

    #[test]
    fn lists_are_parsed() {
        let cfg = NodeConfig::from_args(&NodeArgs {
            databases: Some(" log1, log2 ,log1".into()),
            seeds: Some("127.0.0.2,127.0.0.3:19091,node-a,node-b:7,[::1]".into()),
            master: Some("192.168.0.1; master-b:19091".into()),
            probe_interval: Some("200ms".into()),
            ..args()
        })
        .unwrap();
        let dbs: Vec<_> = cfg.databases.iter().map(|d| d.as_str()).collect();
        assert_eq!(dbs, ["log1", "log2"]);
        assert_eq!(
            cfg.seeds,
            [
                "127.0.0.2:9091",
                "127.0.0.3:19091",
                "node-a:9091",
                "node-b:7",
                "[::1]:9091"
            ]
        );
        assert_eq!(cfg.timings.probe_interval, Duration::from_millis(200));
        // The default probe timeout is kept shorter than the interval.
        assert!(cfg.timings.probe_timeout < cfg.timings.probe_interval);
        assert_eq!(cfg.masters, ["192.168.0.1:9091", "master-b:19091"]);
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        let cases: Vec<(NodeArgs, &str)> = vec![
            (
                NodeArgs {
                    listen: Some("nonsense".into()),
                    ..args()
                },
                "BO_LISTEN",
            ),
            (
                NodeArgs {
                    listen: Some("1.2.3.4:99999".into()),
                    ..args()
                },
                "BO_LISTEN",
            ),
            (
                NodeArgs {
                    endpoint: Some("0.0.0.0:9091".into()),
                    ..args()
                },
                "BO_ENDPOINT",
            ),
            (
                NodeArgs {
                    endpoint: Some("host".into()),
                    ..args()
                },
                "BO_ENDPOINT",
            ),
            (
                NodeArgs {
                    http: Some(":80".into()),
                    ..args()
                },
                "BO_HTTP",
            ),
            (
                NodeArgs {
                    node_id: Some("a b".into()),
                    ..args()
                },
                "BO_NODE_ID",
            ),
            (
                NodeArgs {
                    node_id: Some(".".into()),
                    ..args()
                },
                "BO_NODE_ID",
            ),
            (
                NodeArgs {
                    node_id: Some("..".into()),
                    ..args()
                },
                "BO_NODE_ID",
            ),
            (
                NodeArgs {
                    listen: Some("127.0.0.1:0".into()),
                    ..args()
                },
                "BO_LISTEN",
            ),
            (
                NodeArgs {
                    endpoint: Some("127.0.0.1:0".into()),
                    ..args()
                },
                "BO_ENDPOINT",
            ),
            (
                NodeArgs {
                    databases: Some("ok,9bad".into()),
                    ..args()
                },
                "BO_DATABASES",
            ),
            (
                NodeArgs {
                    databases: Some("a,,b".into()),
                    ..args()
                },
                "BO_DATABASES",
            ),
            (
                NodeArgs {
                    seeds: Some("a,,b".into()),
                    ..args()
                },
                "BO_SEEDS",
            ),
            (
                NodeArgs {
                    seeds: Some("host:0".into()),
                    ..args()
                },
                "BO_SEEDS",
            ),
            (
                NodeArgs {
                    seeds: Some("300.1.1.1".into()),
                    ..args()
                },
                "BO_SEEDS",
            ),
            (
                NodeArgs {
                    cluster_key: Some("".into()),
                    ..args()
                },
                "BO_CLUSTER_KEY",
            ),
            (
                NodeArgs {
                    api_token: Some("two words".into()),
                    ..args()
                },
                "BO_API_TOKEN",
            ),
            (
                NodeArgs {
                    log: Some("info,[".into()),
                    ..args()
                },
                "BO_LOG",
            ),
            (
                NodeArgs {
                    gossip_interval: Some("fast".into()),
                    ..args()
                },
                "BO_GOSSIP_INTERVAL",
            ),
            (
                NodeArgs {
                    probe_interval: Some("1ms".into()),
                    ..args()
                },
                "BO_PROBE_INTERVAL",
            ),
            (
                NodeArgs {
                    probe_timeout: Some("2s".into()),
                    ..args()
                },
                "BO_PROBE_TIMEOUT",
            ),
            (
                NodeArgs {
                    profile: Some("moon".into()),
                    ..args()
                },
                "BO_PROFILE",
            ),
            (
                NodeArgs {
                    dead_node_grace: Some("0s".into()),
                    ..args()
                },
                "BO_DEAD_NODE_GRACE",
            ),
            (
                NodeArgs {
                    phi_threshold: Some("NaN".into()),
                    ..args()
                },
                "BO_PHI_THRESHOLD",
            ),
            (
                NodeArgs {
                    dead_node_grace: Some("x".into()),
                    ..args()
                },
                "BO_DEAD_NODE_GRACE",
            ),
            (
                NodeArgs {
                    data_dir: Some(" ".into()),
                    ..args()
                },
                "BO_DATA_DIR",
            ),
            (
                NodeArgs {
                    master: Some("a;;b".into()),
                    ..args()
                },
                "BO_MASTER",
            ),
            (
                NodeArgs {
                    master: Some("m:70000".into()),
                    ..args()
                },
                "BO_MASTER",
            ),
            (
                NodeArgs {
                    mysql: Some("3306".into()),
                    ..args()
                },
                "BO_MYSQL",
            ),
            (
                NodeArgs {
                    log_format: Some("xml".into()),
                    ..args()
                },
                "BO_LOG_FORMAT",
            ),
            (
                NodeArgs {
                    event_handler: Some("/nonexistent/handler.sh".into()),
                    ..args()
                },
                "BO_EVENT_HANDLER",
            ),
            (
                NodeArgs {
                    // A directory, not an executable file.
                    event_handler: Some("/".into()),
                    ..args()
                },
                "BO_EVENT_HANDLER",
            ),
            (
                NodeArgs {
                    event_handler_timeout: Some("0s".into()),
                    ..args()
                },
                "BO_EVENT_HANDLER_TIMEOUT",
            ),
        ];
        for (bad, var) in cases {
            let err = NodeConfig::from_args(&bad).expect_err(var);
            assert_eq!(err.var, var);
            let msg = err.to_string();
            assert!(msg.contains(var), "{msg}");
            assert!(msg.contains(&format!("{:?}", err.value)), "{msg}");
        }
    }

    #[test]
    fn cluster_keys_are_checked_and_never_echoed() {
        let strong = "kL63lntqa/vXk0YjAysIOtioBkRiaRl3WhUBmpA+Mo8=";
        let other = "O6Tr/fUyefcE2iG2Evq9IQwVP5eU1toongTe1sZLpEI=";
        let cfg = NodeConfig::from_args(&NodeArgs {
            cluster_key: Some(format!("{strong}, {other}")),
            ..args()
        })
        .unwrap();
        assert!(!cfg.cluster_key.is_open());
        assert_eq!(cfg.cluster_key.len(), 2);
        assert!(!format!("{cfg:?}").contains(strong), "Debug shows the key");
        for weak in ["winter2026", "a", &format!("{strong},hunter2")] {
            let err = NodeConfig::from_args(&NodeArgs {
                cluster_key: Some(weak.to_string()),
                ..args()
            })
            .unwrap_err();
            let msg = err.to_string();
            assert_eq!(err.var, "BO_CLUSTER_KEY");
            assert!(
                msg.contains("BO_CLUSTER_KEY") && msg.contains("bocluster keygen"),
                "{msg}"
            );
            assert!(weak.len() < 2 || !msg.contains(weak), "{msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
            assert!(!msg.contains(&strong[..12]), "{msg}");
        }
    }
}
