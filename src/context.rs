//! What statements and background tasks run against: the node's parts, started by `node`.
//!
//! It lives apart from `node` so that `api`, `exec` and `cluster` depend on it, and only
//! `node` wires and starts the tasks (no module imports the one that starts it).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::cluster::master_ids::MasterIds;
use crate::cluster::ClusterView;
use crate::config::NodeConfig;
use crate::identity::NodeIdentity;
use crate::membership::Membership;
use crate::transport::PeerLink;

/// Shared by the API handlers and the background tasks.
pub struct NodeContext {
    pub config: NodeConfig,
    pub identity: NodeIdentity,
    pub catalog: Catalog,
    /// This node's cluster, as a master.
    pub cluster: ClusterView,
    /// Node ids of the masters this node registered with (BO_MASTER).
    pub master_ids: MasterIds,
    pub membership: Membership,
    pub transport: PeerLink,
    pub http_addr: SocketAddr,
    /// Counters and histograms for `GET /metrics`; the engine's own are read from its stats.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Membership and cluster-entry events (`GET /events`, `BO_EVENT_HANDLER`).
    pub events: crate::events::Events,
}

impl NodeContext {
    /// Publishes the current database list in this node's record.
    pub async fn advertise_databases(&self) {
        let names: Vec<String> = self
            .catalog
            .list()
            .iter()
            .map(|n| n.as_str().to_string())
            .collect();
        if let Err(e) = self.membership.set_databases(names).await {
            tracing::error!(error = %e, "cannot advertise this node's databases");
        }
    }
}
