//! chargegate: a self-hosted, CRM.COM-compatible server for the Netflix charges that
//! pay-TV operators and telcos answer (accept, decline, acknowledge).

pub mod api;
pub mod app;
pub mod passwords;
