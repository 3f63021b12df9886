//! chargegate: a self-hosted, CRM.COM-compatible server for the Netflix charges that
//! pay-TV operators and telcos answer (accept, decline, acknowledge).
//!
//! The binary's entry point is [`cli::main`]; the library exists so that tests run the
//! real server in-process, built by the same composition root ([`server::Server`]).
//!
//! The floor plan, top to bottom (a module imports only from floors below it):
//!
//! - [`cli`]: the command line — argument definitions, `serve`, admin commands, CSV import;
//! - [`server`]: the composition root — state, router, listeners, jobs, shutdown;
//! - [`database`], [`config`], [`telemetry`]: opening the database, settings, logs;
//! - [`demo`], [`jobs`]: demo data and the simulated Netflix side; background work;
//! - [`api`], [`console`]: the HTTP API with its OpenAPI document; the operator console
//!   (neither imports the other);
//! - [`state`]: what every handler can reach;
//! - [`auth`]: who is calling (tokens, passwords, rate limit, connector keys);
//! - [`edge`]: the wire format and connections (envelope, errors, extractors, middleware,
//!   the accept loop); it imports no handler;
//! - [`metrics`], [`build`].

pub mod api;
pub mod auth;
pub mod build;
pub mod cli;
pub mod config;
pub mod console;
pub mod database;
pub mod demo;
pub mod edge;
pub mod jobs;
pub mod metrics;
pub mod server;
pub mod state;
pub mod telemetry;

#[cfg(test)]
mod floor_plan;
