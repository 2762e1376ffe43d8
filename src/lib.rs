//! bocluster: database nodes that form master-defined clusters over gossip.
//!
//! Layers, in the order data flows:
//! `config -> cluster_key -> tls / seal -> transport (UDP: QUIC + sealed datagrams) ->
//! membership (SWIM: foca) -> context -> cluster -> exec -> api / web / mysql / cli`, with
//! `catalog` (local databases) beside them, and `metrics` and `events` fed by the layers (the
//! feeding tasks are `event_tasks`) and read by `web`. `node` wires them together
//! (`first_contact` is its first exchange with the cluster).

pub mod api;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod cluster_key;
pub mod config;
pub mod context;
pub mod data_dir_lock;
pub mod db_name;
pub mod durable;
pub mod event_tasks;
pub mod events;
pub mod exec;
pub mod first_contact;
pub mod fleet;
pub mod identity;
pub mod membership;
pub mod metrics;
pub mod mysql;
pub mod node;
pub mod reply;
pub mod resolve;
pub mod seal;
pub mod sql;
pub mod tls;
pub mod transport;
pub mod web;
pub mod wire;
