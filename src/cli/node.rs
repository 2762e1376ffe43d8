//! `bocluster node`: validate the configuration, start, serve until a signal, leave.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, NodeArgs, NodeConfig};
use crate::node::{shutdown_signal, RunningNode};

/// Runs a node; returns the process exit code (2: bad configuration or a port in use).
pub fn run(args: NodeArgs) -> u8 {
    let config = match NodeConfig::from_args(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("bocluster node: {e}");
            return 2;
        }
    };
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        // One JSON object per line (BO_LOG_FORMAT=json), for log collectors.
        LogFormat::Json => logs.json().init(),
        // Colours only for a person at a terminal, not in files or `docker logs`.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    unblock_stop_signals();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bocluster node: cannot start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async {
        match RunningNode::start(config).await {
            Ok(node) => match node.run_until(shutdown_signal()).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("bocluster node: {e}");
                    e.exit_code() as u8
                }
            },
            Err(e) => {
                eprintln!("bocluster node: {e}");
                e.exit_code() as u8
            }
        }
    })
}

/// A process inherits its parent's signal mask, and a parent that blocks SIGTERM for its own
/// handling (a supervisor, a test harness) would leave this node deaf to it: it would never
/// leave gracefully, and its peers would list it `dead` instead of `left`. The stop signals
/// are unblocked before the runtime's threads start (they inherit this thread's mask).
fn unblock_stop_signals() {
    use nix::sys::signal::{SigSet, Signal};
    let mut stop = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stop.add(signal);
    }
    if let Err(e) = stop.thread_unblock() {
        eprintln!(
            "bocluster node: cannot unblock SIGTERM and SIGINT ({e}); a stop signal may go unheard"
        );
    }
}
