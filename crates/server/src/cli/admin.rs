//! The administration commands: `user list|disable|enable|passwd|unlock`,
//! `operator list`, `charges show` and `charges export`.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use chargegate_core::Database;
use chargegate_core::accounts::UserSummary;
use chargegate_core::audit::{ChargeRecord, FEED_SETTLE_SECONDS, FeedCursor, FeedQuery};
use chargegate_core::clock::Timestamp;
use chargegate_core::store::Operator;
use chargegate_core::text::{ChargeNumber, OperatorCode, Username};

use crate::api::audit::{ChargeShow, DecisionItem};
use crate::auth::passwords;
use crate::config::Settings;
use crate::database::{database_label, open_store};

/// Entries per read of an export: large enough that a read costs little per row, small
/// enough that memory stays flat whatever the window holds.
pub(super) const EXPORT_PAGE: u32 = 5_000;

/// A time as typed on the command line: `YYYY-MM-DDTHH:MM:SS` (UTC, a final `Z` allowed)
/// or `YYYY-MM-DD`, meaning 00:00:00 that day.
pub(super) fn time_argument(name: &str, text: &str) -> anyhow::Result<Timestamp> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00")
    } else {
        text.to_owned()
    };
    super::input::timestamp(&full).map_err(|e| {
        anyhow!(
            "{name}: {}",
            e.replace(&format!("'{full}'"), &format!("'{text}'"))
        )
        .context(format!(
            "{name} must be YYYY-MM-DDTHH:MM:SS (UTC) or YYYY-MM-DD"
        ))
    })
}

fn operator_code(text: &str) -> anyhow::Result<OperatorCode> {
    OperatorCode::parse(text).map_err(|e| anyhow!("operator code '{text}' {e}"))
}

fn username(text: &str) -> anyhow::Result<Username> {
    Username::parse(text).map_err(|e| anyhow!("username '{text}' {e}"))
}

async fn operator(store: &Arc<dyn Database>, code: &OperatorCode) -> anyhow::Result<Operator> {
    store
        .operator_by_code(code)
        .await?
        .ok_or_else(|| anyhow!("no operator '{code}'"))
}

fn no_user(name: &Username, code: &OperatorCode) -> anyhow::Error {
    anyhow!("no user '{name}' in operator '{code}'")
}

/// Runs `work` on the configured database and closes it, whatever the outcome.
async fn with_store<T>(
    settings: &Settings,
    work: impl AsyncFnOnce(&Arc<dyn Database>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let store = open_store(settings).await?;
    let outcome = work(&store).await;
    store.close().await;
    outcome
}

fn lockout(user: &UserSummary, now: Timestamp) -> String {
    match user.locked_until {
        Some(until) if until > now => format!("locked until {until}"),
        _ if user.failed_attempts > 0 => format!("{} failed login(s)", user.failed_attempts),
        _ => "-".to_owned(),
    }
}

/// Lines of text in aligned columns.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths[i]))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub(super) async fn user_list(
    settings: &Settings,
    operator_filter: Option<&str>,
) -> anyhow::Result<()> {
    let code = operator_filter.map(operator_code).transpose()?;
    let users = with_store(settings, async |store| {
        let id = match &code {
            Some(code) => Some(operator(store, code).await?.id),
            None => None,
        };
        Ok(store.list_users(id).await?)
    })
    .await?;
    let now = Timestamp::now();
    let mut rows = vec![
        ["OPERATOR", "USER", "ENABLED", "LAST LOGIN", "LOCKOUT"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for u in &users {
        rows.push(vec![
            u.operator.to_string(),
            u.username.to_string(),
            if u.enabled { "yes" } else { "no" }.to_owned(),
            u.last_login.map_or("never".to_owned(), |t| t.to_string()),
            lockout(u, now),
        ]);
    }
    print!("{}", table(&rows));
    if users.is_empty() {
        println!("(no users)");
    }
    Ok(())
}

pub(super) async fn user_set_enabled(
    settings: &Settings,
    name: &str,
    operator_text: &str,
    enabled: bool,
) -> anyhow::Result<()> {
    let name = username(name)?;
    let code = operator_code(operator_text)?;
    let change = with_store(settings, async |store| {
        let op = operator(store, &code).await?;
        store
            .set_user_enabled(op.id, &name, enabled, Timestamp::now())
            .await?
            .ok_or_else(|| no_user(&name, &code))
    })
    .await?;
    if enabled {
        println!(
            "enabled user {name} of operator {code}: they can log in again (revoked tokens stay revoked)"
        );
    } else {
        println!(
            "disabled user {name} of operator {code}: logins refused, {} token(s) revoked",
            change.tokens_revoked
        );
    }
    Ok(())
}

pub(super) async fn user_passwd(
    settings: &Settings,
    name: &str,
    operator_text: &str,
) -> anyhow::Result<()> {
    let name = username(name)?;
    let code = operator_code(operator_text)?;
    // The user is looked up first, so nobody types a password for a typo.
    let op = with_store(settings, async |store| {
        let op = operator(store, &code).await?;
        store
            .login_user(&code, &name)
            .await?
            .ok_or_else(|| no_user(&name, &code))?;
        Ok(op)
    })
    .await?;
    let password = super::common::read_password("nothing was changed")?;
    let hash = tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .context("password hashing stopped")??;
    let change = with_store(settings, async |store| {
        store
            .set_user_password(op.id, &name, &hash, Timestamp::now())
            .await?
            .ok_or_else(|| no_user(&name, &code))
    })
    .await?;
    println!(
        "changed the password of user {name} of operator {code}; {} token(s) revoked",
        change.tokens_revoked
    );
    Ok(())
}

pub(super) async fn user_unlock(
    settings: &Settings,
    name: &str,
    operator_text: &str,
) -> anyhow::Result<()> {
    let name = username(name)?;
    let code = operator_code(operator_text)?;
    let cleared = with_store(settings, async |store| {
        operator(store, &code).await?;
        store
            .login_user(&code, &name)
            .await?
            .ok_or_else(|| no_user(&name, &code))?;
        Ok(store.clear_login_failures(&code, &name).await?)
    })
    .await?;
    if cleared {
        println!("unlocked user {name} of operator {code}: failed logins forgotten");
    } else {
        println!("user {name} of operator {code} had no failed logins; nothing to do");
    }
    Ok(())
}

pub(super) async fn operator_list(settings: &Settings) -> anyhow::Result<()> {
    let operators = with_store(settings, async |store| Ok(store.list_operators().await?)).await?;
    let mut header: Vec<String> = ["CODE", "NAME", "CURRENCY", "USERS"]
        .map(str::to_owned)
        .to_vec();
    header.extend(
        chargegate_core::charge::ChargeStatus::ALL
            .iter()
            .map(|s| s.as_str().to_owned()),
    );
    let mut rows = vec![header];
    for o in &operators {
        let mut row = vec![
            o.operator.code.to_string(),
            o.operator.name.clone(),
            o.operator.local_currency.to_string(),
            o.users.to_string(),
        ];
        row.extend(o.charges.iter().map(|(_, n)| n.to_string()));
        rows.push(row);
    }
    print!("{}", table(&rows));
    if operators.is_empty() {
        println!("(no operators)");
    }
    Ok(())
}

fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

fn print_record(record: &ChargeRecord) -> String {
    let c = &record.charge;
    let stamp = |t: Option<Timestamp>| t.map_or("-".to_owned(), |t| t.to_string());
    let mut rows: Vec<Vec<String>> = vec![
        ("operator", record.operator.to_string()),
        ("billing_system_customer_identifier", c.customer.to_string()),
        ("amount", c.amount.to_string()),
        ("local_currency_amount", c.local_amount.to_string()),
        ("paid_through_date", c.paid_through_date.to_string()),
        ("charge_status", c.status.to_string()),
        ("received_on", c.received_on.to_string()),
        ("set_as_approved_on", stamp(c.set_as_approved_on)),
        ("set_as_declined_on", stamp(c.set_as_declined_on)),
        ("set_as_bad_request_on", stamp(c.set_as_bad_request_on)),
        ("set_as_rejected_request_on", stamp(c.set_as_rejected_on)),
        (
            "reference_number",
            or_dash(record.reference_number.as_deref()).to_owned(),
        ),
        (
            "netflix_customer_identifier",
            or_dash(record.netflix_customer.as_deref()).to_owned(),
        ),
        (
            "subscription_number",
            or_dash(record.subscription_number.as_deref()).to_owned(),
        ),
        (
            "acknowledged_status",
            record
                .acknowledged_status
                .map_or("-".to_owned(), |s| s.to_string()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| vec![format!("  {k}"), v])
    .collect();
    let mut out = format!("charge {}\n", c.number);
    out.push_str(&table(&rows));
    out.push_str("history\n");
    rows = vec![
        [
            "  AT",
            "EVENT",
            "FROM",
            "TO",
            "ACTOR",
            "REQUEST",
            "REFERENCE",
            "REASON",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for h in &record.history {
        rows.push(vec![
            format!("  {}", h.at),
            h.event.to_string(),
            h.from_status.map_or("-".to_owned(), |s| s.to_string()),
            h.to_status.to_string(),
            h.actor.to_string(),
            or_dash(h.request_id.as_deref()).to_owned(),
            or_dash(h.reference_number.as_deref()).to_owned(),
            or_dash(h.reason.as_deref()).to_owned(),
        ]);
    }
    out.push_str(&table(&rows));
    out
}

pub(super) async fn charges_show(
    settings: &Settings,
    number: &str,
    json: bool,
) -> anyhow::Result<()> {
    let parsed =
        ChargeNumber::parse(number).map_err(|e| anyhow!("charge number '{number}' {e}"))?;
    let record = with_store(settings, async |store| {
        store.charge_record(None, &parsed).await?.ok_or_else(|| {
            anyhow!(
                "no charge {number} in {}",
                database_label(&settings.database_url)
            )
        })
    })
    .await?;
    if json {
        let mut text = serde_json::to_string_pretty(&ChargeShow::of(&record))
            .context("cannot write the charge as JSON")?;
        text.push('\n');
        write_stdout(text.as_bytes())
    } else {
        write_stdout(print_record(&record).as_bytes())
    }
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow!(e).context("cannot write to standard output"))
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum ExportFormat {
    Csv,
    Json,
}

/// The CSV columns of an export, the fields of the feed's entries in their order.
pub(super) const EXPORT_COLUMNS: [&str; 11] = [
    "number",
    "billing_system_customer_identifier",
    "event",
    "from_status",
    "to_status",
    "at",
    "actor",
    "request_id",
    "reference_number",
    "amount",
    "currency",
];

/// Writes the feed of a window to `out` page by page, as it is read: memory does not grow
/// with the window. Answers how many entries were written and whether the window was
/// complete (settled) when the last page was read.
pub(super) async fn export(
    store: &dyn Database,
    mut query: FeedQuery,
    format: ExportFormat,
    out: &mut dyn Write,
) -> anyhow::Result<(u64, bool)> {
    enum Sink<'a> {
        Csv(Box<csv::Writer<&'a mut dyn Write>>),
        Json(&'a mut dyn Write),
    }
    let mut sink = match format {
        ExportFormat::Csv => {
            let mut w = csv::WriterBuilder::new()
                .buffer_capacity(1 << 16)
                .from_writer(out);
            w.write_record(EXPORT_COLUMNS)?;
            Sink::Csv(Box::new(w))
        }
        ExportFormat::Json => {
            out.write_all(b"[")?;
            Sink::Json(out)
        }
    };
    let mut written: u64 = 0;
    let mut waited = std::time::Duration::ZERO;
    loop {
        let page = store.decision_feed(&query).await?;
        for entry in &page.entries {
            let item = DecisionItem::of(entry);
            match &mut sink {
                Sink::Csv(w) => {
                    let amount = entry.amount.to_decimal_string();
                    w.write_record([
                        item.number.as_str(),
                        &item.billing_system_customer_identifier,
                        item.event,
                        item.from_status,
                        item.to_status,
                        &item.at,
                        &item.actor,
                        item.request_id.as_deref().unwrap_or(""),
                        item.reference_number.as_deref().unwrap_or(""),
                        &amount,
                        item.currency,
                    ])?;
                }
                Sink::Json(out) => {
                    out.write_all(if written == 0 { b"\n" } else { b",\n" })?;
                    serde_json::to_writer(&mut **out, &item)?;
                }
            }
            written += 1;
        }
        let full = page.entries.len() >= query.limit as usize;
        if let Some(last) = page.entries.last() {
            query.after = last.position;
        }
        if full {
            continue;
        }
        if page.held_back {
            // Entries of an older transaction still running are not certain yet; they are
            // waited for rather than skipped.
            if waited == std::time::Duration::from_secs(1) {
                eprintln!("waiting for a database transaction still running before the rest");
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            waited += std::time::Duration::from_millis(100);
            continue;
        }
        break;
    }
    match sink {
        Sink::Csv(mut w) => w.flush()?,
        Sink::Json(out) => {
            out.write_all(if written == 0 { b"]\n" } else { b"\n]\n" })?;
            out.flush()?;
        }
    }
    let settled = query.to.plus_seconds(FEED_SETTLE_SECONDS) <= Timestamp::now();
    Ok((written, settled))
}

pub(super) async fn charges_export(
    settings: &Settings,
    operator_text: &str,
    from: &str,
    to: &str,
    format: ExportFormat,
) -> anyhow::Result<()> {
    let code = operator_code(operator_text)?;
    let from = time_argument("--from", from)?;
    let to = time_argument("--to", to)?;
    if to <= from {
        bail!("--to ({to}) must be after --from ({from})");
    }
    let (written, settled) = with_store(settings, async |store| {
        let op = operator(store, &code).await?;
        let query = FeedQuery {
            operator_id: op.id,
            from,
            to,
            after: FeedCursor::default(),
            limit: EXPORT_PAGE,
        };
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
        match export(store.as_ref(), query, format, &mut out).await {
            // A reader that stops early (`| head`) is not worth a message.
            Err(e) if broken_pipe(&e) => Ok((0, true)),
            other => other,
        }
    })
    .await?;
    eprintln!("exported {written} status change(s) of operator {code} from {from} to {to}");
    if !settled {
        eprintln!(
            "note: the window ends later than {} minutes ago; decisions made before its end may \
             still be committing: export it again later for the complete list",
            FEED_SETTLE_SECONDS / 60
        );
    }
    Ok(())
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    let io = e.downcast_ref::<std::io::Error>().or_else(|| {
        e.downcast_ref::<csv::Error>().and_then(|e| match e.kind() {
            csv::ErrorKind::Io(io) => Some(io),
            _ => None,
        })
    });
    io.is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
