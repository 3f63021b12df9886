//! Background work that `serve` starts and stops: the outbox's backlog for the metrics and
//! the webhook that pushes the outbox.

pub mod outbox_push;
pub mod webhook_client;
