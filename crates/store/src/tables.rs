//! The one list of chargegate's tables: what `db copy` moves, in foreign-key order, with
//! each column's kind. A test compares it with the real schema of both backends, so a
//! migration that adds a table or a column without listing it here fails at once.

/// How a column's values travel between backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A 64-bit integer (SQLite INTEGER, PostgreSQL BIGINT).
    Int,
    /// A string (TEXT on both).
    Text,
    /// A flag (SQLite INTEGER 0/1, PostgreSQL BOOLEAN).
    Bool,
    /// Bytes (SQLite BLOB, PostgreSQL BYTEA).
    Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
    /// The integer key a copy pages by (ascending), when the table has one; tables without
    /// one are small (tokens, login attempts) and read whole, ordered by `order_by`.
    pub page_key: Option<&'static str>,
    pub order_by: &'static str,
    /// Whether PostgreSQL generates `id` from an identity that must move past copied ids.
    pub identity: bool,
}

impl Table {
    /// The column names, comma-separated, in list order.
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

const fn int(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Int,
    }
}
const fn text(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Text,
    }
}

const fn flag(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Bool,
    }
}

/// Every table a copy moves, parents before children.
pub const TABLES: &[Table] = &[
    Table {
        name: "operators",
        columns: &[
            int("id"),
            text("code"),
            text("name"),
            text("local_currency"),
            int("created_at"),
        ],
        page_key: Some("id"),
        order_by: "id",
        identity: true,
    },
    Table {
        name: "users",
        columns: &[
            int("id"),
            int("operator_id"),
            text("username"),
            text("password_hash"),
            Column {
                name: "enabled",
                kind: Kind::Bool,
            },
            int("created_at"),
            int("last_login_at"),
        ],
        page_key: Some("id"),
        order_by: "id",
        identity: true,
    },
    Table {
        name: "api_keys",
        columns: &[
            int("id"),
            int("operator_id"),
            int("user_id"),
            text("prefix"),
            Column {
                name: "hash",
                kind: Kind::Bytes,
            },
            text("name"),
            int("created_at"),
            int("revoked_at"),
        ],
        page_key: Some("id"),
        order_by: "id",
        identity: true,
    },
    Table {
        name: "connector_keys",
        columns: &[
            int("id"),
            int("operator_id"),
            text("prefix"),
            Column {
                name: "hash",
                kind: Kind::Bytes,
            },
            text("name"),
            int("created_at"),
            int("revoked_at"),
        ],
        page_key: Some("id"),
        order_by: "id",
        identity: true,
    },
    Table {
        name: "login_attempts",
        columns: &[
            text("organisation"),
            text("username"),
            int("attempts"),
            int("locked_until"),
            int("last_attempt_at"),
        ],
        page_key: None,
        order_by: "organisation, username",
        identity: false,
    },
    Table {
        name: "token_secrets",
        columns: &[
            int("generation"),
            Column {
                name: "secret",
                kind: Kind::Bytes,
            },
            int("created_at"),
        ],
        page_key: None,
        order_by: "generation",
        identity: false,
    },
    Table {
        name: "tokens",
        columns: &[
            Column {
                name: "hash",
                kind: Kind::Bytes,
            },
            int("user_id"),
            int("issued_at"),
            int("expires_at"),
            int("revoked_at"),
            int("key_id"),
        ],
        page_key: None,
        order_by: "hash",
        identity: false,
    },
    Table {
        name: "subscriptions",
        columns: &[
            int("id"),
            text("number"),
            int("operator_id"),
            text("customer_id"),
            text("netflix_customer_id"),
            text("life_cycle_state"),
            text("netflix_state"),
            text("channel"),
            text("customer_first_name"),
            text("customer_last_name"),
            text("customer_address"),
            text("customer_email"),
            text("customer_phone"),
            Column {
                name: "netflix_token_hash",
                kind: Kind::Bytes,
            },
            int("netflix_token_expires_at"),
            int("created_at"),
            int("cancelled_at"),
        ],
        page_key: Some("id"),
        order_by: "id",
        identity: true,
    },
    Table {
        name: "promotions",
        columns: &[
            int("id"),
            int("operator_id"),
            text("code"),
            text("name"),
            text("description"),
            int("effective_from"),
            int("expires_on"),
            int("created_at"),
        ],
        page_key: Some("id"),
        order_by: "id",
        identity: true,
    },
    Table {
        name: "charges",
        columns: &[
            int("id"),
            text("number"),
            int("operator_id"),
            text("customer_id"),
            text("netflix_customer_id"),
            int("amount_minor"),
            text("currency"),
            int("local_amount_minor"),
            text("local_currency"),
            text("paid_through_date"),
            text("status"),
            text("initial_status"),
            int("received_on"),
            int("set_as_approved_on"),
            int("set_as_declined_on"),
            int("set_as_bad_request_on"),
            int("set_as_rejected_on"),
            text("acknowledged_status"),
            int("acknowledged_on"),
            text("acknowledged_reference_number"),
            int("subscription_id"),
            text("netflix_charge_id"),
        ],
        page_key: Some("id"),
        order_by: "id",
        identity: true,
    },
    Table {
        name: "decisions",
        columns: &[
            int("charge_id"),
            int("operator_id"),
            text("method"),
            text("reference_number"),
            int("user_id"),
            int("decided_on"),
            text("request_id"),
            int("key_id"),
        ],
        page_key: Some("charge_id"),
        order_by: "charge_id",
        identity: false,
    },
    Table {
        name: "acknowledgements",
        columns: &[
            int("id"),
            int("charge_id"),
            int("operator_id"),
            text("status"),
            text("reference_number"),
            int("user_id"),
            int("acknowledged_on"),
            text("request_id"),
        ],
        page_key: Some("id"),
        order_by: "id",
        identity: true,
    },
    Table {
        name: "charge_history",
        columns: &[
            int("id"),
            int("charge_id"),
            text("event"),
            text("from_status"),
            text("to_status"),
            int("at"),
            int("user_id"),
            text("request_id"),
            text("reference_number"),
            int("key_id"),
            flag("via_console"),
            int("connector_key_id"),
            text("reason"),
        ],
        page_key: Some("id"),
        order_by: "id",
        identity: true,
    },
    Table {
        name: "subscription_history",
        columns: &[
            int("id"),
            int("subscription_id"),
            text("event"),
            text("from_state"),
            text("to_state"),
            int("at"),
            int("user_id"),
            int("key_id"),
            text("request_id"),
            int("charge_id"),
            int("promotion_id"),
            int("connector_key_id"),
            flag("via_console"),
        ],
        page_key: Some("id"),
        order_by: "id",
        identity: true,
    },
    Table {
        name: "subscription_promotions",
        columns: &[
            int("id"),
            int("subscription_id"),
            int("promotion_id"),
            int("redeemed_at"),
        ],
        page_key: Some("id"),
        order_by: "id",
        identity: true,
    },
    Table {
        name: "outbox",
        columns: &[
            int("id"),
            int("operator_id"),
            text("type"),
            int("occurred_at"),
            int("charge_id"),
            text("reference_number"),
            int("subscription_id"),
            text("life_cycle_state"),
            text("netflix_state"),
            text("netflix_customer_id"),
            int("delivered_at"),
        ],
        page_key: Some("id"),
        order_by: "id",
        identity: true,
    },
];

/// Tables that exist but are deliberately not copied, and why.
pub const NOT_COPIED: &[(&str, &str)] = &[
    (
        "write_probe",
        "a readiness check's scratch row, meaningful only to the database it is in",
    ),
    (
        "console_sessions",
        "console sign-ins end with the move: people sign in again on the new database",
    ),
    (
        "outbox_lease",
        "which server pushes the outbox to the webhook now, meaningful only to the servers \
         sharing that database",
    ),
    (
        "_sqlx_migrations",
        "each database records its own migrations",
    ),
];

/// Columns that exist on one backend only and are deliberately not copied, and why.
pub const NOT_COPIED_COLUMNS: &[(&str, &str, &str)] = &[(
    "charge_history",
    "xid",
    "PostgreSQL's feed position: the id of the transaction that wrote the row, meaningful \
     only in the database it is in (a target fills it with the copy's own)",
)];

/// Tables whose rows make a database "not empty" for `db copy`.
pub const CONTENT_TABLES: &[&str] = &[
    "operators",
    "users",
    "tokens",
    "charges",
    "api_keys",
    "connector_keys",
    "subscriptions",
    "promotions",
];

/// Rows per chunk of a copy.
pub const CHUNK_ROWS: usize = 1000;

/// One stored value, as a copy carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
    Bytes(Vec<u8>),
}

/// Part of a copy: rows of one table (values in [`Table::columns`] order), or the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Rows(&'static Table, Vec<Vec<Value>>),
    /// The source finished: everything was sent.
    End,
}
