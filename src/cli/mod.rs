//! The command-line edges: each subcommand reports errors with context and picks exit codes.

pub mod demo;
pub mod health;
pub mod keygen;
pub mod node;
pub mod shell;
pub mod sql;
pub mod table;
