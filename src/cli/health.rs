//! `bocluster health`: asks a node's `/health`, for container health checks.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The node's HTTP API [default: 127.0.0.1 with the port of BO_HTTP, else 127.0.0.1:9090]
    #[arg(long, value_name = "HOST:PORT")]
    pub host: Option<String>,
}

/// Where a node in this environment serves its API, seen from the same host.
fn default_host() -> String {
    let port = std::env::var("BO_HTTP")
        .ok()
        .and_then(|v| v.parse::<SocketAddr>().ok())
        .map(|a| a.port())
        .unwrap_or(crate::config::DEFAULT_HTTP_PORT);
    format!("127.0.0.1:{port}")
}

/// Exit code 0 when the node answers healthy, 1 otherwise.
pub fn run(args: HealthArgs) -> u8 {
    let host = args.host.unwrap_or_else(default_host);
    let url = format!("http://{host}/health");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    match agent.get(&url).call() {
        Ok(response) => match response.into_body().read_json::<serde_json::Value>() {
            Ok(body) if body["status"] == "ok" => {
                println!("{body}");
                0
            }
            Ok(body) => {
                eprintln!("bocluster health: {url} answered {body}");
                1
            }
            Err(e) => {
                eprintln!("bocluster health: {url} answered without JSON: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("bocluster health: cannot reach {url}: {e}");
            1
        }
    }
}
