//! The HTTP client of a node's statement API, used by `bocluster sql` (and its shell), the
//! demo, the tests and the harness, so they all reach a node the same way.

use std::time::Duration;

use serde_json::{json, Value};

/// The outcome of a request to a node's API.
#[derive(Debug)]
pub enum ApiOutcome {
    /// The node answered (any HTTP status) with a JSON body.
    Answered { status: u16, body: Value },
    /// The node could not be reached or did not answer JSON.
    Unreachable(String),
}

/// `host:port` with a name resolved by our own resolver (the static binary in the container
/// image cannot resolve names through glibc); unchanged when it cannot be resolved.
fn dialable(host: &str) -> String {
    if host.parse::<std::net::SocketAddr>().is_ok() {
        return host.to_string();
    }
    let resolved = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
        .and_then(|rt| rt.block_on(crate::resolve::resolve_host_port(host)).ok());
    match resolved.as_deref() {
        Some([first, ..]) => first.to_string(),
        _ => host.to_string(),
    }
}

/// Sends `statement` to `http://{host}/api` (`host` may be a name), without a token.
pub fn post_statement(host: &str, statement: &str, timeout: Duration) -> ApiOutcome {
    post_statement_with(host, statement, timeout, None)
}

/// [`post_statement`], with `Authorization: Bearer <token>` when `token` is given.
pub fn post_statement_with(
    host: &str,
    statement: &str,
    timeout: Duration,
    token: Option<&str>,
) -> ApiOutcome {
    let address = dialable(host);
    let url = if address == host {
        format!("http://{host}/api")
    } else {
        format!("http://{address}/api")
    };
    let shown = if address == host {
        url.clone()
    } else {
        format!("http://{host}/api ({address})")
    };
    post_statement_on(&api_agent(timeout), &url, &shown, statement, token)
}

/// An HTTP client for [`post_statement_on`]: it keeps its connections open between requests.
pub fn api_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// Sends `statement` to `url` (`http://ip:port/api`, shown as `shown` in errors) through
/// `agent`, reusing its open connection: a caller that asks a node many times (the edge
/// harness polling a join every millisecond) pays for one TCP connection, not one per question.
pub fn post_statement_on(
    agent: &ureq::Agent,
    url: &str,
    shown: &str,
    statement: &str,
    token: Option<&str>,
) -> ApiOutcome {
    let mut request = agent.post(url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = match request.send_json(json!({ "stmt": statement })) {
        Ok(response) => response,
        Err(e) => {
            return ApiOutcome::Unreachable(format!(
                "cannot reach a bocluster node at {shown}: {e}"
            ))
        }
    };
    let status = response.status().as_u16();
    match response.into_body().read_json::<Value>() {
        Ok(body) => ApiOutcome::Answered { status, body },
        Err(e) => ApiOutcome::Unreachable(format!(
            "{shown} answered HTTP {status} without a JSON body ({e}); is it a bocluster node?"
        )),
    }
}
