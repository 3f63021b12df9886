//! chargegate: a self-hosted, CRM.COM-compatible server for the Netflix charges that
//! pay-TV operators and telcos answer (accept, decline, acknowledge).
//!
//! The binary's entry point is [`cli::main`]; the library exists so that tests can run
//! the real server in-process ([`app::serve`]).

pub mod admin_cli;
pub mod api;
pub mod app;
pub mod build;
pub mod cli;
pub mod config;
pub mod console;
pub mod csv_import;
pub mod demo;
pub mod edge;
pub mod input;
pub mod jwt;
pub mod metrics;
pub mod outbox_push;
pub mod passwords;
pub mod ratelimit;
pub mod simulator;
pub mod telemetry;
pub mod webhook_client;
