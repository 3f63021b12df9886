//! A verbatim copy of a whole database, for moving between backends (`chargegate db copy`).
//!
//! Rows travel as plain records (the stored columns, not domain types): a copy must carry
//! every row exactly as it is, ids included, whatever its content. The source streams
//! chunks table by table in foreign-key order from one read transaction (a consistent
//! snapshot, even while a server keeps writing); the target writes them in one
//! transaction and commits only when it has seen [`DumpChunk::End`], so a copy that stops
//! half-way leaves the target as empty as it was.

use async_trait::async_trait;

use crate::store::StoreResult;

/// Rows per chunk.
pub const CHUNK_ROWS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub local_currency: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub operator_id: i64,
    pub username: String,
    pub password_hash: String,
    pub enabled: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAttemptRecord {
    pub organisation: String,
    pub username: String,
    pub attempts: i64,
    pub locked_until: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub hash: Vec<u8>,
    pub user_id: i64,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRecord {
    pub id: i64,
    pub number: String,
    pub operator_id: i64,
    pub customer_id: String,
    pub netflix_customer_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub local_amount_minor: i64,
    pub local_currency: String,
    pub paid_through_date: String,
    pub status: String,
    pub initial_status: String,
    pub received_on: i64,
    pub set_as_approved_on: Option<i64>,
    pub set_as_declined_on: Option<i64>,
    pub set_as_bad_request_on: Option<i64>,
    pub set_as_rejected_on: Option<i64>,
    pub acknowledged_status: Option<String>,
    pub acknowledged_on: Option<i64>,
    pub acknowledged_reference_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    pub charge_id: i64,
    pub operator_id: i64,
    pub method: String,
    pub reference_number: Option<String>,
    pub user_id: i64,
    pub decided_on: i64,
    pub request_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcknowledgementRecord {
    pub id: i64,
    pub charge_id: i64,
    pub operator_id: i64,
    pub status: String,
    pub reference_number: Option<String>,
    pub user_id: i64,
    pub acknowledged_on: i64,
    pub request_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    pub id: i64,
    pub charge_id: i64,
    pub event: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub at: i64,
    pub user_id: Option<i64>,
    pub request_id: Option<String>,
    pub reference_number: Option<String>,
}

/// Part of a copy. Chunks arrive table by table in this order, then `End`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpChunk {
    Operators(Vec<OperatorRecord>),
    Users(Vec<UserRecord>),
    LoginAttempts(Vec<LoginAttemptRecord>),
    Tokens(Vec<TokenRow>),
    Charges(Vec<ChargeRecord>),
    Decisions(Vec<DecisionRecord>),
    Acknowledgements(Vec<AcknowledgementRecord>),
    History(Vec<HistoryRecord>),
    /// The source finished: everything was sent.
    End,
}

impl DumpChunk {
    /// The table this chunk fills, and how many rows it holds.
    pub fn describe(&self) -> (&'static str, usize) {
        match self {
            DumpChunk::Operators(r) => ("operators", r.len()),
            DumpChunk::Users(r) => ("users", r.len()),
            DumpChunk::LoginAttempts(r) => ("login_attempts", r.len()),
            DumpChunk::Tokens(r) => ("tokens", r.len()),
            DumpChunk::Charges(r) => ("charges", r.len()),
            DumpChunk::Decisions(r) => ("decisions", r.len()),
            DumpChunk::Acknowledgements(r) => ("acknowledgements", r.len()),
            DumpChunk::History(r) => ("charge_history", r.len()),
            DumpChunk::End => ("end", 0),
        }
    }
}

/// Where an export sends its chunks.
#[async_trait]
pub trait DumpSink: Send {
    /// Fails when the receiving side has gone away.
    async fn send(&mut self, chunk: DumpChunk) -> StoreResult<()>;
}

/// Where an import reads its chunks; `None` when the sender stopped (early, unless it
/// sent `End` first).
#[async_trait]
pub trait DumpSource: Send {
    async fn next(&mut self) -> Option<DumpChunk>;
}

/// Rows copied per table, in copy order.
pub type CopySummary = Vec<(&'static str, u64)>;
