//! The contract's limits on one call: how many items a batch may carry and how far a
//! list or the feed may page. Handlers enforce them and the OpenAPI document states them,
//! so both read them here.

/// Most items one call of accept, decline or acknowledge may carry.
pub const MAX_ITEMS: usize = 50;

/// Most charges one page of `charges/list` returns.
pub const MAX_PAGE: u32 = 50;

/// Largest `offset` of `charges/list` (the databases count rows in signed 64 bits).
#[allow(clippy::cast_sign_loss)]
pub const MAX_OFFSET: u64 = i64::MAX as u64;

/// Most entries one page of the reconciliation feed holds.
pub const MAX_FEED_PAGE: u32 = 1000;

/// How many entries a page of the feed holds when `limit` is absent.
pub const DEFAULT_FEED_PAGE: u32 = 100;
