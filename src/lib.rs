//! bocluster: database nodes that form master-defined clusters over gossip.
//!
//! Layers, in the order data flows (see `README.md`):
//! `config -> tls -> transport -> gossip -> cluster -> sql -> api / cli`.

pub mod db_name;
pub mod sql;
