//! Operator statements: `CREATE DATABASE`, `DROP DATABASE`, `SHOW DATABASES`,
//! `SHOW NODES`, `SHOW CLUSTER`, `ADD CLIENT` and `DROP CLIENT`.
//!
//! [`parse_statement`] turns one line of operator input into a typed [`Statement`]; every
//! failure is a [`ParseError`] that points at a line and column of that input.

pub mod parser;
pub mod statement;

pub use parser::{parse_statement, ParseError};
pub use statement::{ClientHost, ClientHostError, ClientSpec, Statement, DEFAULT_CLIENT_PORT};
