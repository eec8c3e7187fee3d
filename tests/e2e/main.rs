//! End-to-end tests: real PostgreSQL servers started by the harness, the proxy in-process, and
//! real clients (psql, pgbench, tokio-postgres, raw sockets) talking to it.

mod backend_auth;
mod bad_input;
mod catalog_oids;
mod cli;
mod copy;
mod cursors;
mod deep_statements;
mod directory;
mod dump;
mod extended_protocol;
mod fanout;
mod faults;
mod federation;
mod harness;
mod hung_servers;
mod insert_columns;
mod limits;
mod operations;
mod pgbench;
mod pooling;
mod psql_client;
mod raw;
mod reload;
mod replicas;
pub mod routing;
mod rust_driver;
mod sqlx_driver;
mod support;
mod tls;
mod transactions;
