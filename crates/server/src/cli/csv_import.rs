//! `chargegate charges import FILE`: charges from a CSV file, all or nothing.
//!
//! The whole file is read and checked before anything is written; every problem is
//! reported as `line N: column: problem`. Only a file without problems reaches the store,
//! which writes it in one transaction (and may still refuse rows whose number is taken
//! with different data, reported the same way).

use std::collections::HashMap;
use std::path::Path;

use chargegate_core::charge::ChargeStatus;
use chargegate_core::clock::Timestamp;
use chargegate_core::store::{AdminStore, ImportOutcome, ImportSummary, NewCharge, Operator};
use chargegate_core::text::{ChargeNumber, CustomerId, OperatorCode};
use indicatif::{ProgressBar, ProgressStyle};

use super::input;

/// The columns a file may have, mandatory ones first.
const MANDATORY: &[&str] = &[
    "operator",
    "billing_system_customer_identifier",
    "amount",
    "currency",
    "paid_through_date",
];
const OPTIONAL: &[&str] = &[
    "number",
    "netflix_customer_identifier",
    "local_currency_amount",
    "received_on",
    "charge_status",
];

/// Longest accepted Netflix customer id (PAI).
const MAX_NETFLIX_ID: usize = 128;

/// Files with at least this many rows get a progress bar (on a terminal only).
const PROGRESS_THRESHOLD: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file holds nothing, not even a header row.
    #[error(
        "{path} is empty: it needs a header row naming the columns ({columns}) and one charge per row"
    )]
    Empty { path: String, columns: String },
    /// Problems with the file's content; nothing was written.
    #[error("{} problem(s) found; nothing was imported", .0.len())]
    Rejected(Vec<String>),
    #[error(transparent)]
    Store(#[from] chargegate_core::StoreError),
}

/// One parsed row and the line it started on.
struct Row {
    line: u64,
    charge: NewCharge,
}

/// Column positions from the header row.
struct Columns {
    index: HashMap<&'static str, usize>,
}

impl Columns {
    fn parse(header: &csv::StringRecord) -> Result<Self, Vec<String>> {
        let mut index = HashMap::new();
        let mut problems = Vec::new();
        for (i, raw) in header.iter().enumerate() {
            // Spreadsheets like to start a file with a byte-order mark.
            let name = raw.trim_start_matches('\u{feff}').trim();
            match MANDATORY.iter().chain(OPTIONAL).find(|c| **c == name) {
                Some(known) => {
                    if index.insert(*known, i).is_some() {
                        problems.push(format!("line 1: {name}: column appears twice"));
                    }
                }
                None => problems.push(format!(
                    "line 1: {name}: unknown column (known: {})",
                    MANDATORY
                        .iter()
                        .chain(OPTIONAL)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        for column in MANDATORY {
            if !index.contains_key(column) {
                problems.push(format!("line 1: {column}: mandatory column is missing"));
            }
        }
        if problems.is_empty() {
            Ok(Columns { index })
        } else {
            Err(problems)
        }
    }

    /// The cell of `column`, `None` when the column is absent or the cell empty.
    fn get<'r>(&self, record: &'r csv::StringRecord, column: &str) -> Option<&'r str> {
        let i = *self.index.get(column)?;
        record.get(i).map(str::trim).filter(|s| !s.is_empty())
    }
}

/// The column separator, from the header line: `,`, or `;` when the line has semicolons
/// and no comma (spreadsheets save CSV that way where the comma is the decimal mark).
/// `None` when the file has no header line at all.
fn sniff_delimiter(path: &Path) -> std::io::Result<Option<u8>> {
    use std::io::BufRead;
    let mut first = String::new();
    let mut lines = std::io::BufReader::new(std::fs::File::open(path)?);
    // A header that is not UTF-8 is reported by the CSV reader, with its line.
    while first
        .trim_matches(['\u{feff}', ' ', '\t', '\r', '\n'])
        .is_empty()
    {
        let mut bytes = Vec::new();
        if lines.read_until(b'\n', &mut bytes)? == 0 {
            return Ok(None);
        }
        first = String::from_utf8_lossy(&bytes).into_owned();
    }
    Ok(Some(if !first.contains(',') && first.contains(';') {
        b';'
    } else {
        b','
    }))
}

/// Reads and checks a whole file against the store's operators.
async fn read(
    store: &dyn AdminStore,
    path: &Path,
    bar: &ProgressBar,
) -> Result<Vec<Row>, ImportError> {
    let read_error = |source| ImportError::Read {
        path: path.display().to_string(),
        source,
    };
    let Some(delimiter) = sniff_delimiter(path).map_err(read_error)? else {
        return Err(ImportError::Empty {
            path: path.display().to_string(),
            columns: MANDATORY.join(","),
        });
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .delimiter(delimiter)
        .from_reader(file);
    let header = reader.headers().map_err(|e| {
        ImportError::Rejected(vec![format!("line 1: the header row cannot be read: {e}")])
    })?;
    let columns = Columns::parse(header).map_err(ImportError::Rejected)?;

    let mut operators: HashMap<String, Option<Operator>> = HashMap::new();
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                let what = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        format!("row has {len} cells but the header has {expected_len}")
                    }
                    csv::ErrorKind::Utf8 { .. } => "row is not valid UTF-8".to_owned(),
                    _ => e.to_string(),
                };
                problems.push(format!("line {line}: {what}"));
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
                continue;
            }
        }
        let line = record.position().map_or(0, csv::Position::line);
        bar.set_position(record.position().map_or(0, csv::Position::byte));

        let operator = match columns.get(&record, "operator") {
            Some(code) => {
                if !operators.contains_key(code) {
                    let found = match OperatorCode::parse(code) {
                        Ok(c) => store.operator_by_code(&c).await?,
                        Err(_) => None,
                    };
                    operators.insert(code.to_owned(), found);
                }
                operators.get(code).cloned().flatten()
            }
            None => None,
        };
        match parse_row(&columns, &record, operator.as_ref()) {
            Ok(charge) => rows.push(Row { line, charge }),
            Err(row_problems) => problems.extend(
                row_problems
                    .into_iter()
                    .map(|(column, problem)| format!("line {line}: {column}: {problem}")),
            ),
        }
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(ImportError::Rejected(problems))
    }
}

type Problems = Vec<(&'static str, String)>;

/// Checks one row; every bad cell is reported, not only the first.
fn parse_row(
    columns: &Columns,
    record: &csv::StringRecord,
    operator: Option<&Operator>,
) -> Result<NewCharge, Problems> {
    let mut problems: Problems = Vec::new();
    let mut report = |column: &'static str, problem: String| problems.push((column, problem));
    let cell = |column: &str| columns.get(record, column);

    if operator.is_none() {
        match cell("operator") {
            None => report("operator", "is mandatory".into()),
            Some(code) => report(
                "operator",
                format!("no operator '{code}' (create it with: chargegate operator add)"),
            ),
        }
    }
    let customer = match cell("billing_system_customer_identifier") {
        None => {
            report("billing_system_customer_identifier", "is mandatory".into());
            None
        }
        Some(c) => CustomerId::parse(c)
            .map_err(|e| report("billing_system_customer_identifier", e.to_string()))
            .ok(),
    };
    let currency = match cell("currency") {
        None => {
            report("currency", "is mandatory".into());
            None
        }
        Some(c) => input::currency(c).map_err(|e| report("currency", e)).ok(),
    };
    let amount = match (cell("amount"), currency) {
        (None, _) => {
            report("amount", "is mandatory".into());
            None
        }
        (Some(_), None) => None, // reported under currency
        (Some(a), Some(cur)) => match input::money(a, cur) {
            Ok(m) if m.is_positive() => Some(m),
            Ok(_) => {
                report("amount", format!("must be greater than 0, not {a}"));
                None
            }
            Err(e) => {
                report("amount", e);
                None
            }
        },
    };
    let local_amount = match (operator, cell("local_currency_amount")) {
        (None, _) => None, // reported under operator
        (Some(op), Some(text)) => match input::money(text, op.local_currency) {
            Ok(m) if !m.is_positive() => {
                report(
                    "local_currency_amount",
                    format!("must be greater than 0, not {text}"),
                );
                None
            }
            Ok(m) if currency == Some(op.local_currency) && amount.is_some_and(|a| a != m) => {
                report(
                    "local_currency_amount",
                    format!(
                        "must equal amount when currency is the operator's local currency ({})",
                        op.local_currency
                    ),
                );
                None
            }
            Ok(m) => Some(m),
            Err(e) => {
                report("local_currency_amount", e);
                None
            }
        },
        (Some(op), None) => match currency {
            Some(c) if c == op.local_currency => amount,
            Some(c) => {
                report(
                    "local_currency_amount",
                    format!(
                        "is mandatory when currency ({c}) is not the operator's local currency ({})",
                        op.local_currency
                    ),
                );
                None
            }
            None => None,
        },
    };
    let paid_through_date = match cell("paid_through_date") {
        None => {
            report("paid_through_date", "is mandatory".into());
            None
        }
        Some(d) => input::date(d)
            .map_err(|e| report("paid_through_date", e))
            .ok(),
    };
    let number = cell("number").and_then(|n| {
        ChargeNumber::parse(n)
            .map_err(|e| report("number", e.to_string()))
            .ok()
    });
    let netflix_customer = cell("netflix_customer_identifier").and_then(|n| {
        if n.chars().count() > MAX_NETFLIX_ID || n.chars().any(char::is_control) {
            report(
                "netflix_customer_identifier",
                format!("must be at most {MAX_NETFLIX_ID} characters without control characters"),
            );
            None
        } else {
            Some(n.to_owned())
        }
    });
    let received_on = cell("received_on").and_then(|t| {
        input::timestamp(t)
            .map_err(|e| report("received_on", e))
            .ok()
    });
    let status = cell("charge_status").and_then(|s| {
        let parsed = ChargeStatus::parse(s);
        if parsed.is_none() {
            report(
                "charge_status",
                format!("'{s}' is not one of PENDING, APPROVED, DECLINED, BAD_REQUEST, REJECTED"),
            );
        }
        parsed
    });

    match (operator, customer, amount, local_amount, paid_through_date) {
        (Some(op), Some(customer), Some(amount), Some(local_amount), Some(paid_through_date))
            if problems.is_empty() =>
        {
            Ok(NewCharge {
                operator_id: op.id,
                number,
                customer,
                netflix_customer,
                amount,
                local_amount,
                paid_through_date,
                received_on,
                status,
            })
        }
        _ => Err(problems),
    }
}

/// A progress bar on standard error, drawn only when it is a terminal. It knows its
/// length from the start, so its first frame is empty rather than full.
fn progress_bar(length: u64, message: &'static str, counts: &str) -> ProgressBar {
    let bar = ProgressBar::new(length);
    if let Ok(style) =
        ProgressStyle::with_template(&format!("{{msg:>9}} [{{bar:40}}] {counts} ({{eta}})"))
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// Imports a CSV file; on success returns how many charges were added and skipped.
pub async fn import(store: &dyn AdminStore, path: &Path) -> Result<ImportSummary, ImportError> {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let reading = if size > 100 * PROGRESS_THRESHOLD {
        // Sizes in KiB/MiB: a byte count tells a person nothing.
        progress_bar(size, "checking", "{binary_bytes}/{binary_total_bytes}")
    } else {
        ProgressBar::hidden()
    };
    let rows = read(store, path, &reading).await;
    reading.finish_and_clear();
    let rows = rows?;

    let total = rows.len() as u64;
    let writing = if total >= PROGRESS_THRESHOLD {
        progress_bar(total, "importing", "{human_pos}/{human_len} rows")
    } else {
        ProgressBar::hidden()
    };
    let charges: Vec<NewCharge> = rows.iter().map(|r| r.charge.clone()).collect();
    let bar = writing.clone();
    let outcome = store
        .import_charges(
            charges,
            Timestamp::now(),
            std::sync::Arc::new(move |done| bar.set_position(done)),
        )
        .await;
    writing.finish_and_clear();
    match outcome? {
        ImportOutcome::Imported(summary) => Ok(summary),
        ImportOutcome::Refused(conflicts) => Err(ImportError::Rejected(
            conflicts
                .into_iter()
                .map(|c| {
                    let line = rows.get(c.index).map_or(0, |r| r.line);
                    let earlier = c
                        .earlier
                        .and_then(|i| rows.get(i))
                        .map(|r| format!(" (line {})", r.line))
                        .unwrap_or_default();
                    format!("line {line}: {}: {}{earlier}", c.column, c.problem)
                })
                .collect(),
        )),
    }
}
