//! The black-box tests in one binary (linking the server once instead of once per file):
//! the real server, over HTTP and through the real `chargegate` binary, on both backends.
//!
//! Apart, each its own binary: `console_browser` (a real browser, which `.ci/run`
//! installs), `connector_process` (servers killed with SIGKILL while four clients load
//! them) and `cluster` (two servers racing on one PostgreSQL database).

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod admin_cli;
mod audit;
mod auth;
mod charges;
mod cli;
mod cli_subscriptions;
mod commit_outcome;
mod connector;
mod console;
mod copy;
mod crm_clients;
mod decline;
mod demo;
mod differentials;
mod docs;
mod edge;
mod engine;
mod feed;
mod http;
mod keys;
mod nul;
mod openapi;
mod ops;
mod outage;
mod store_contract;
mod subscriptions;
mod tls;
mod webhook;
