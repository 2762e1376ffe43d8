//! One node: wires config -> identity -> catalog -> TLS -> UDP/QUIC -> membership -> HTTP API,
//! runs until told to stop, then leaves the cluster cleanly.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::catalog::{Catalog, CatalogError};
use crate::cluster::master_ids::MasterIds;
use crate::cluster::registration::keep_registered;
use crate::cluster::{master, ClusterError, ClusterView};
use crate::config::NodeConfig;
use crate::context::NodeContext;
use crate::data_dir_lock::{DataDirError, DataDirLock};
use crate::first_contact::FirstContact;
use crate::identity::{IdentityError, NodeIdentity};
use crate::membership::{Membership, MembershipSettings, Record};
use crate::resolve::resolve_host_port;
use crate::tls::{ClusterIdentity, KeySource, TlsError};
use crate::transport::{
    Datagrams, IncomingRequest, MemoryNetwork, PeerLink, QuicTransport, TransportError,
};

/// The version advertised in this node's record and shown by SHOW NODES.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("BO_DATA_DIR: cannot use {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: io::Error,
    },
    #[error("BO_DATA_DIR: {0}")]
    DataDirLock(#[from] DataDirError),
    #[error("BO_DATA_DIR: {0}")]
    Identity(#[from] IdentityError),
    #[error("BO_DATA_DIR: {0}")]
    Catalog(#[from] CatalogError),
    #[error("BO_DATA_DIR: {0}")]
    Cluster(#[from] ClusterError),
    #[error("BO_LISTEN: {0}")]
    Transport(#[from] TransportError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("BO_NODE_ID: node id {node_id} is already alive at {endpoint} (it answered there); give this node another BO_NODE_ID, or stop the other one first")]
    DuplicateNodeId {
        node_id: String,
        endpoint: SocketAddr,
    },
    #[error("BO_NODE_ID: node id {node_id} is also held by a process that started later, at {endpoint} (they met when a partition healed); it keeps the id and this process stopped. Give one of them another BO_NODE_ID")]
    NodeIdTakenOver {
        node_id: String,
        endpoint: SocketAddr,
    },
    #[error("BO_HTTP: address {addr} is already in use (TCP); is another node running there?")]
    HttpInUse { addr: SocketAddr },
    #[error("BO_HTTP: cannot bind TCP {addr}: {source}")]
    HttpBind { addr: SocketAddr, source: io::Error },
    #[error("BO_MYSQL: cannot serve MySQL: {0}")]
    Mysql(#[from] crate::mysql::MysqlError),
}

impl NodeError {
    /// 2 for what the operator must fix (configuration, ports, data dir), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            NodeError::Tls(_) => 1,
            _ => 2,
        }
    }
}

/// Where a node's peer traffic goes.
pub enum PeerNetwork {
    /// QUIC with mutual TLS on `BO_LISTEN`: what a node process uses.
    Quic,
    /// An in-process network shared by nodes of one process (`edge-fleet scale`).
    Memory(MemoryNetwork),
}

/// A started node, serving until [`RunningNode::run_until`] returns.
pub struct RunningNode {
    pub ctx: Arc<NodeContext>,
    http: TcpListener,
    mysql: Option<TcpListener>,
    background: Vec<JoinHandle<()>>,
    /// Held until the node has stopped: one process per data dir.
    _data_dir_lock: DataDirLock,
}

impl RunningNode {
    /// Starts everything; every failure here is reported before any traffic is sent.
    pub async fn start(config: NodeConfig) -> Result<RunningNode, NodeError> {
        RunningNode::start_on(config, PeerNetwork::Quic).await
    }

    /// [`RunningNode::start`], with the peers reached over `network`.
    pub async fn start_on(
        config: NodeConfig,
        network: PeerNetwork,
    ) -> Result<RunningNode, NodeError> {
        let data_dir_lock = DataDirLock::acquire(&config.data_dir)?;
        let identity = NodeIdentity::next(&config.data_dir, config.node_id.as_deref())?;
        // The new generation is written, and the databases and the cluster are opened
        // (BO_DATABASES created), each with its fsyncs, on two blocking threads while the
        // transport is set up and the node id is checked (see `first_contact`), so a
        // `BO_MASTER` client reaches its master sooner. Nothing announces the generation
        // before it is written; and the errors are still reported first.
        let saved_identity = tokio::task::spawn_blocking({
            let data_dir = config.data_dir.clone();
            let identity = identity.clone();
            move || identity.save(&data_dir)
        });
        let storage = tokio::task::spawn_blocking({
            let data_dir = config.data_dir.clone();
            let databases = config.databases.clone();
            move || open_storage(&data_dir, &databases)
        });

        let metrics = Arc::new(crate::metrics::Metrics::new());
        let transport = match network {
            PeerNetwork::Quic => bind_quic(&config, &identity, metrics.clone()),
            PeerNetwork::Memory(network) => network.bind(config.endpoint).map_err(NodeError::from),
        };
        let http = TcpListener::bind(config.http).await.map_err(|source| {
            if source.kind() == io::ErrorKind::AddrInUse {
                NodeError::HttpInUse { addr: config.http }
            } else {
                NodeError::HttpBind {
                    addr: config.http,
                    source,
                }
            }
        });

        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Masters are seeds too: a client joins its master's membership. Names are resolved
        // here (and again later, see `refresh_named_seeds`) with our own resolver, which works
        // in a static binary.
        let named_seeds: Vec<String> = config
            .seeds
            .iter()
            .chain(&config.masters)
            .filter(|s| s.parse::<SocketAddr>().is_err())
            .cloned()
            .collect();
        let master_addrs = resolve_all(&config.masters).await;
        let first_master = master_addrs
            .first()
            .and_then(|addrs| addrs.first())
            .copied();
        let mut seeds: Vec<SocketAddr> = resolve_all(&config.seeds).await.concat();
        seeds.extend(master_addrs.concat());

        // The node id check (and a client's first registration, which makes it) runs beside
        // the storage: see `first_contact`.
        let link = match (&transport, &http) {
            (Ok((link, _, _)), Ok(_)) => Some(link.clone()),
            _ => None,
        };
        let contact = link.as_ref().map(|link| FirstContact {
            link,
            identity: &identity,
            endpoint: config.endpoint,
            host: &host,
            seeds: &seeds,
            master: first_master,
        });
        let early = async {
            match &contact {
                Some(contact) => Some(contact.early().await),
                None => None,
            }
        };
        let (saved_identity, storage, early) = tokio::join!(saved_identity, storage, early);
        let stopped = |e: tokio::task::JoinError| NodeError::DataDir {
            path: config.data_dir.clone(),
            source: io::Error::other(e),
        };
        saved_identity.map_err(stopped)??;
        let (catalog, cluster) = storage.map_err(stopped)??;
        let (transport, datagrams, requests) = transport?;
        let http = http?;
        let http_addr = http.local_addr().unwrap_or(config.http);
        crate::auth::warn_if_open(config.api_token.as_ref(), http_addr);
        let mysql = match config.mysql {
            Some(addr) => Some(crate::mysql::bind(addr).await?),
            None => None,
        };
        // Only a node that will run registers: every other start error came first.
        let first = match (&contact, early) {
            (Some(contact), Some(early)) => contact.finish(early, catalog_names(&catalog)).await,
            _ => Default::default(),
        };
        if let Some(endpoint) = first.twin {
            return Err(NodeError::DuplicateNodeId {
                node_id: identity.node_id.clone(),
                endpoint,
            });
        }

        let mut sorted_databases = catalog_names(&catalog);
        sorted_databases.sort();
        // A master that registered this node already is advertised from the first record on.
        let master_ids = MasterIds::default();
        let mut advertised_masters = Vec::new();
        if let (Some(address), Some(master_id)) = (config.masters.first(), &first.registered_with) {
            advertised_masters = master_ids.record(address, master_id).unwrap_or_default();
        }
        let settings = MembershipSettings {
            node_id: identity.node_id.clone(),
            generation: identity.generation,
            endpoint: config.endpoint,
            seeds,
            timings: config.timings.clone(),
            record: Record {
                version: 1,
                api: http_addr.to_string(),
                databases: sorted_databases,
                masters: advertised_masters,
                software: VERSION.to_string(),
                host,
                leaving: false,
            },
        };
        let membership = Membership::start(settings, Arc::new(transport.clone()), datagrams);
        info!(
            node_id = %identity.node_id,
            generation = identity.generation,
            listen = %config.listen,
            endpoint = %config.endpoint,
            http = %http_addr,
            profile = config.timings.profile.as_str(),
            "node started"
        );
        let events = crate::events::Events::new(&identity.node_id);
        let ctx = Arc::new(NodeContext {
            config,
            identity,
            catalog,
            cluster,
            master_ids,
            membership,
            transport,
            http_addr,
            metrics,
            events,
        });
        let mut background = vec![
            tokio::spawn(master::serve_requests(ctx.clone(), requests)),
            tokio::spawn(master::apply_registrations(ctx.clone())),
            tokio::spawn(master::reach_out(ctx.clone())),
        ];
        background.extend(crate::event_tasks::spawn(ctx.clone()));
        if !named_seeds.is_empty() {
            background.push(tokio::spawn(refresh_named_seeds(ctx.clone(), named_seeds)));
        }
        // Off the start's path: the first ADD CLIENT then is one append, not two new files.
        let prepare = ctx.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = prepare.cluster.prepare_journal() {
                warn!(error = %e, "cannot prepare the cluster's files; the first change will");
            }
        });
        for (i, address) in ctx.config.masters.iter().enumerate() {
            let registered = i == 0 && first.registered_with.is_some();
            background.push(tokio::spawn(keep_registered(
                ctx.clone(),
                address.clone(),
                registered,
            )));
        }
        Ok(RunningNode {
            ctx,
            http,
            mysql,
            background,
            _data_dir_lock: data_dir_lock,
        })
    }

    /// Serves the API until `shutdown` completes, then leaves the cluster gracefully; or
    /// until a later process holding this node's id takes it over (an error: the node stops
    /// without a goodbye, since the id lives on in the other process).
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), NodeError> {
        if let Some(listener) = self.mysql.take() {
            self.background.push(tokio::spawn(crate::mysql::serve(
                self.ctx.clone(),
                listener,
            )));
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = crate::api::router(self.ctx.clone(), crate::web::routes(self.ctx.clone()));
        let server = tokio::spawn(crate::api::serve(self.http, app, async {
            let _ = stop_rx.await;
        }));
        let taken_over = tokio::select! {
            _ = shutdown => None,
            winner = self.ctx.membership.id_taken_over() => Some(winner),
        };
        for task in &self.background {
            task.abort();
        }
        if taken_over.is_none() {
            info!("stopping: telling peers this node is leaving");
            self.ctx.membership.leave().await;
        }
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), server).await;
        self.ctx.transport.close().await;
        info!("node stopped");
        match taken_over {
            Some(winner) => Err(NodeError::NodeIdTakenOver {
                node_id: winner.node_id,
                endpoint: winner.endpoint,
            }),
            None => Ok(()),
        }
    }
}

/// Opens the databases (with BO_DATABASES created) and the cluster state in `data_dir`.
fn open_storage(
    data_dir: &std::path::Path,
    databases: &[crate::db_name::DatabaseName],
) -> Result<(Catalog, ClusterView), NodeError> {
    let catalog = Catalog::open(data_dir)?;
    let cluster = ClusterView::open(data_dir)?;
    for name in databases {
        if catalog.ensure(name)? {
            info!(database = %name, "created database from BO_DATABASES");
        }
    }
    Ok((catalog, cluster))
}

/// The QUIC transport on `BO_LISTEN`, with this node's certificate.
fn bind_quic(
    config: &NodeConfig,
    identity: &NodeIdentity,
    metrics: Arc<crate::metrics::Metrics>,
) -> Result<(PeerLink, Datagrams, mpsc::Receiver<IncomingRequest>), NodeError> {
    let tls = ClusterIdentity::new(&config.cluster_key, &identity.node_id)?;
    if tls.key_source == KeySource::OpenDefault {
        warn!("BO_CLUSTER_KEY is not set: traffic is encrypted, but ANY bocluster node can join this cluster and read its membership. Set the same BO_CLUSTER_KEY on every node to close it.");
    }
    let (quic, datagrams, requests) = QuicTransport::bind(
        config.listen,
        config.endpoint,
        &tls,
        &config.cluster_key,
        metrics,
    )?;
    Ok((PeerLink::Quic(quic), datagrams, requests))
}

/// The names of `catalog`'s databases.
fn catalog_names(catalog: &Catalog) -> Vec<String> {
    catalog.list().iter().map(|n| n.to_string()).collect()
}

/// Each of `names` (`host:port` or `ip:port`) resolved, in order; one that does not resolve
/// yet is logged and left to `refresh_named_seeds`.
async fn resolve_all(names: &[String]) -> Vec<Vec<SocketAddr>> {
    let mut resolved = Vec::with_capacity(names.len());
    for name in names {
        if let Ok(addr) = name.parse::<SocketAddr>() {
            resolved.push(vec![addr]);
            continue;
        }
        match resolve_host_port(name).await {
            Ok(addrs) => resolved.push(addrs),
            Err(e) => {
                warn!(seed = %name, error = %e, "cannot resolve a seed yet; will retry");
                resolved.push(Vec::new());
            }
        }
    }
    resolved
}

/// How often seed names are resolved again (a seed container may come back elsewhere).
const SEED_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolves seed names again and again, and joins through each address that is not a live
/// member yet: a seed that was down or renumbered at start is still found.
async fn refresh_named_seeds(ctx: Arc<NodeContext>, names: Vec<String>) {
    let mut ticker = tokio::time::interval(SEED_REFRESH);
    loop {
        ticker.tick().await;
        for name in &names {
            let Ok(addrs) = resolve_host_port(name).await else {
                continue;
            };
            for addr in addrs {
                if !ctx.membership.alive_at(addr) {
                    ctx.membership.join_through(addr);
                }
            }
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
