//! Every key this node advertises in gossip, in one place.
//!
//! A node's endpoint travels in its chitchat id (the address peers gossip with), so it needs
//! no key of its own.

/// Sorted database names joined by `,`.
pub const DATABASES: &str = "databases";
/// The HTTP API address (`ip:port`).
pub const API: &str = "api";
/// The bocluster version the node runs.
pub const VERSION: &str = "version";
/// The host name the node reports.
pub const HOST: &str = "host";
/// Masters this node registers with (set by the cluster layer).
pub const MASTERS: &str = "masters";
/// Set just before a clean shutdown so peers show the node as `left` at once.
pub const LEFT: &str = "left";
