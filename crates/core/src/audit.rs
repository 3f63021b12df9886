//! Reading what happened: a charge with its whole history (`charges/show`), and the
//! reconciliation feed of status changes (`charges/decisions`, `charges export`).
//!
//! The history is append-only and written by the write paths (imports, batches); this
//! module only reads it. Two rules live here once, for both backends: how a stored history
//! row is named on the wire ([`HistoryEvent`]) and who it says acted ([`Actor`]).

use std::fmt;

use async_trait::async_trait;

use crate::charge::{Charge, ChargeStatus};
use crate::clock::Timestamp;
use crate::error::StoreResult;
use crate::money::Money;
use crate::text::{ChargeNumber, CustomerId, OperatorCode};

/// An event of a charge's history, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryEvent {
    Received,
    Approved,
    Declined,
    BadRequest,
    Rejected,
    Acknowledged,
}

impl HistoryEvent {
    pub fn as_str(&self) -> &'static str {
        match self {
            HistoryEvent::Received => "received",
            HistoryEvent::Approved => "approved",
            HistoryEvent::Declined => "declined",
            HistoryEvent::BadRequest => "bad_request",
            HistoryEvent::Rejected => "rejected",
            HistoryEvent::Acknowledged => "acknowledged",
        }
    }

    pub const ALL: [HistoryEvent; 6] = [
        HistoryEvent::Received,
        HistoryEvent::Approved,
        HistoryEvent::Declined,
        HistoryEvent::BadRequest,
        HistoryEvent::Rejected,
        HistoryEvent::Acknowledged,
    ];

    /// The wire name of a stored history row. A row without a previous status is the
    /// charge's arrival, one that keeps its status is an acknowledgement, and any other
    /// is a status change, named by the status it reached (whatever wrote it: an accept,
    /// a decline, or later the Netflix side's own verdicts).
    pub fn of(from: Option<ChargeStatus>, to: ChargeStatus) -> HistoryEvent {
        match from {
            None => HistoryEvent::Received,
            Some(from) if from == to => HistoryEvent::Acknowledged,
            Some(_) => match to {
                ChargeStatus::Approved => HistoryEvent::Approved,
                ChargeStatus::Declined => HistoryEvent::Declined,
                ChargeStatus::BadRequest => HistoryEvent::BadRequest,
                ChargeStatus::Rejected => HistoryEvent::Rejected,
                // A change back to PENDING cannot be written; should one ever be stored,
                // it is shown as what it is closest to rather than hidden.
                ChargeStatus::Pending => HistoryEvent::Received,
            },
        }
    }
}

impl fmt::Display for HistoryEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who caused a history row, as the API writes it: `user:<name>`, `console:<name>` (a
/// person in the operator console), `import`, and (as the credentials that make them
/// arrive) `key:<prefix>` and `connector`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(String),
    Console(String),
    Key(String),
    Connector,
    Import,
}

/// What a stored history row says about its author. Each source of writes adds its own
/// field here, and [`Actor::of`] decides in one place.
#[derive(Debug, Clone, Default)]
pub struct ActorColumns<'a> {
    /// The stored event (`import`, `accept`, `decline`, `acknowledge`, …).
    pub event: &'a str,
    /// The acting user's name, when a user acted.
    pub username: Option<&'a str>,
    /// The visible prefix of the web API key the user's token came from, if any.
    pub key_prefix: Option<&'a str>,
    /// Whether the user acted in the operator console.
    pub via_console: bool,
}

impl Actor {
    /// Who wrote a history row. A row written with a token from a web API key is that
    /// key's; one written with a password login's token is that user's; the rest come
    /// from the command line's imports.
    pub fn of(columns: &ActorColumns<'_>) -> Actor {
        // Only a connector key writes these: intake receipts and Netflix's verdicts.
        if matches!(columns.event, "intake" | "verdict") {
            return Actor::Connector;
        }
        match (columns.key_prefix, columns.username) {
            (Some(prefix), _) => Actor::Key(prefix.to_owned()),
            (None, Some(name)) if columns.via_console => Actor::Console(name.to_owned()),
            (None, Some(name)) => Actor::User(name.to_owned()),
            (None, None) => Actor::Import,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(name) => write!(f, "user:{name}"),
            Actor::Console(name) => write!(f, "console:{name}"),
            Actor::Key(prefix) => write!(f, "key:{prefix}"),
            Actor::Connector => f.write_str("connector"),
            Actor::Import => f.write_str("import"),
        }
    }
}

/// One row of a charge's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub at: Timestamp,
    pub event: HistoryEvent,
    pub from_status: Option<ChargeStatus>,
    pub to_status: ChargeStatus,
    pub actor: Actor,
    pub request_id: Option<String>,
    pub reference_number: Option<String>,
    /// Why (the Netflix side's verdicts carry one); `None` for everything stored today.
    pub reason: Option<String>,
}

/// A charge with what `charges/show` adds to it, and its whole history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRecord {
    pub operator: OperatorCode,
    pub charge: Charge,
    /// The reference number of the accept or decline that decided it.
    pub reference_number: Option<String>,
    pub netflix_customer: Option<String>,
    /// The subscription it belongs to; none until subscriptions exist.
    pub subscription_number: Option<String>,
    /// The status it was last acknowledged in.
    pub acknowledged_status: Option<ChargeStatus>,
    pub history: Vec<HistoryEntry>,
}

/// A position in the feed: every entry has one, later commits always get greater ones.
///
/// `commit` orders transactions (PostgreSQL: the writing transaction's id, served only
/// once every older transaction has ended; SQLite, whose one writer commits in order:
/// always 0) and `row` orders the rows of one transaction (the history row's id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeedCursor {
    pub commit: i64,
    pub row: i64,
}

impl FeedCursor {
    /// The opaque text clients pass back as `after`.
    pub fn encode(&self) -> String {
        format!("{}-{}", self.commit, self.row)
    }

    pub fn parse(text: &str) -> Option<FeedCursor> {
        let (commit, row) = text.split_once('-')?;
        let number = |s: &str| -> Option<i64> {
            // At most 18 digits: every position fits, and the document can say so.
            let plain = !s.is_empty()
                && s.len() <= 18
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'));
            if plain { s.parse().ok() } else { None }
        };
        Some(FeedCursor {
            commit: number(commit)?,
            row: number(row)?,
        })
    }
}

/// One page of the feed: entries whose time is in `[from, to)` positioned after `after`.
#[derive(Debug, Clone, Copy)]
pub struct FeedQuery {
    pub operator_id: i64,
    pub from: Timestamp,
    pub to: Timestamp,
    pub after: FeedCursor,
    pub limit: u32,
}

/// A status change, as the feed lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub position: FeedCursor,
    pub number: ChargeNumber,
    pub customer: CustomerId,
    pub event: HistoryEvent,
    pub from_status: ChargeStatus,
    pub to_status: ChargeStatus,
    pub at: Timestamp,
    pub actor: Actor,
    pub request_id: Option<String>,
    pub reference_number: Option<String>,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    pub entries: Vec<FeedEntry>,
    /// Whether committed entries past the last one are held back because an older
    /// transaction is still running (PostgreSQL); they come with a later page.
    pub held_back: bool,
}

/// How long after its time a status change is certain to have committed: a decision is
/// written within seconds of the time it carries (the database timeout bounds each of its
/// waits), so a window that ended this long ago can gain no new entry.
pub const FEED_SETTLE_SECONDS: i64 = 300;

impl FeedPage {
    /// The cursor a client continues from, or `None` once the window is complete: this
    /// page is its last one (not full, nothing held back) and `to` is past by
    /// [`FEED_SETTLE_SECONDS`] at `now`.
    pub fn next(&self, query: &FeedQuery, now: Timestamp) -> Option<FeedCursor> {
        let last = self.entries.last().map_or(query.after, |e| e.position);
        let full = self.entries.len() >= query.limit as usize;
        let settled = query.to.plus_seconds(FEED_SETTLE_SECONDS) <= now;
        if full || self.held_back || !settled {
            Some(last)
        } else {
            None
        }
    }
}

/// Reads of the audit trail. Both are plain reads: they never wait for or block writers.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// A charge with its history; with `operator_id`, only that operator's (another
    /// operator's charge is `None`, like a missing one).
    async fn charge_record(
        &self,
        operator_id: Option<i64>,
        number: &ChargeNumber,
    ) -> StoreResult<Option<ChargeRecord>>;

    /// One page of the reconciliation feed: the operator's status changes (not receipts
    /// or acknowledgements) whose time is in the window, in position order after the
    /// cursor, at most `limit`. Paging never skips or repeats an entry, even while
    /// decisions commit.
    async fn decision_feed(&self, query: &FeedQuery) -> StoreResult<FeedPage>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_rows_are_named_by_the_change_they_record() {
        use ChargeStatus::*;
        assert_eq!(HistoryEvent::of(None, Pending), HistoryEvent::Received);
        assert_eq!(HistoryEvent::of(None, Declined), HistoryEvent::Received);
        assert_eq!(
            HistoryEvent::of(Some(Pending), Approved),
            HistoryEvent::Approved
        );
        assert_eq!(
            HistoryEvent::of(Some(Pending), Declined),
            HistoryEvent::Declined
        );
        assert_eq!(
            HistoryEvent::of(Some(Pending), Rejected),
            HistoryEvent::Rejected
        );
        assert_eq!(
            HistoryEvent::of(Some(Pending), BadRequest),
            HistoryEvent::BadRequest
        );
        assert_eq!(
            HistoryEvent::of(Some(Declined), Declined),
            HistoryEvent::Acknowledged
        );
    }

    #[test]
    fn actors_are_users_by_name_or_the_import() {
        let user = ActorColumns {
            event: "decline",
            username: Some("billing"),
            key_prefix: None,
            via_console: false,
        };
        assert_eq!(Actor::of(&user).to_string(), "user:billing");
        let console = ActorColumns {
            via_console: true,
            ..user.clone()
        };
        assert_eq!(Actor::of(&console).to_string(), "console:billing");
        let key = ActorColumns {
            event: "decline",
            username: Some("billing"),
            key_prefix: Some("cgk_3f9a"),
            via_console: false,
        };
        assert_eq!(Actor::of(&key).to_string(), "key:cgk_3f9a");
        let import = ActorColumns {
            event: "import",
            username: None,
            key_prefix: None,
            via_console: false,
        };
        assert_eq!(Actor::of(&import).to_string(), "import");
        let verdict = ActorColumns {
            event: "verdict",
            username: None,
            key_prefix: None,
            via_console: false,
        };
        assert_eq!(Actor::of(&verdict).to_string(), "connector");
        assert_eq!(Actor::Key("cgk_3f9a".into()).to_string(), "key:cgk_3f9a");
        assert_eq!(Actor::Connector.to_string(), "connector");
    }

    #[test]
    fn cursors_read_back_what_they_wrote_and_nothing_else() {
        let c = FeedCursor {
            commit: 7_000_123,
            row: 42,
        };
        assert_eq!(FeedCursor::parse(&c.encode()), Some(c));
        assert_eq!(
            FeedCursor::parse("0-0"),
            Some(FeedCursor { commit: 0, row: 0 })
        );
        for bad in [
            "", "-", "1", "1-", "-1", "01-2", "1-+2", "a-1", "1-2-3", "1 -2",
        ] {
            assert_eq!(FeedCursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_window_is_complete_only_when_its_last_page_is_short_and_settled() {
        let t = |s: &str| Timestamp::parse(s).expect("time");
        let query = FeedQuery {
            operator_id: 1,
            from: t("2026-11-01T00:00:00"),
            to: t("2026-11-02T00:00:00"),
            after: FeedCursor::default(),
            limit: 2,
        };
        let empty = FeedPage {
            entries: vec![],
            held_back: false,
        };
        let later = t("2026-11-03T00:00:00");
        assert_eq!(empty.next(&query, later), None);
        // Just after `to`: a decision made before it may still be committing.
        assert_eq!(
            empty.next(&query, t("2026-11-02T00:01:00")),
            Some(FeedCursor::default())
        );
        let held = FeedPage {
            entries: vec![],
            held_back: true,
        };
        assert_eq!(held.next(&query, later), Some(FeedCursor::default()));
    }
}
