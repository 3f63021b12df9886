//! `chargegate key add|list|revoke` and `chargegate promotion add|list`.

use anyhow::{Context, anyhow, bail};
use chargegate_core::Database;
use chargegate_core::apikey::{ApiKey, KEY_BYTES, NewApiKey, RevokeOutcome};
use chargegate_core::clock::Timestamp;
use chargegate_core::store::StoreError;
use chargegate_core::subscription::{NewPromotion, Promotion, PromotionCode};
use chargegate_core::text::{OperatorCode, Username};
use clap::Subcommand;

use super::common::conflict_as_message;
use crate::config::Settings;
use crate::database::{database_label, open_store};

#[derive(Debug, Subcommand)]
pub(super) enum KeyCommand {
    /// Create a web API key for a user; it is printed once and never again.
    Add {
        /// Code of the user's operator.
        #[arg(long, value_name = "CODE")]
        operator: String,
        /// The user the key logs in as.
        #[arg(long, value_name = "USERNAME")]
        user: String,
        /// A note to tell keys apart (e.g. "billing system").
        #[arg(long, value_name = "TEXT")]
        name: Option<String>,
    },
    /// Store an existing key (e.g. a CRM.COM web API key) for a user, read from standard
    /// input (one line; typed without echo on a terminal).
    ///
    /// Only its SHA-256 and its prefix (first 8 characters) are kept. A key shorter than
    /// 16 characters or obviously guessable (fewer than 6 different characters, a
    /// repeated block, or mostly counting up or down like 0123456789abcdef) is refused,
    /// as is a key already stored or one whose prefix another key has.
    Import {
        /// Code of the user's operator.
        #[arg(long, value_name = "CODE")]
        operator: String,
        /// The user the key logs in as.
        #[arg(long, value_name = "USERNAME")]
        user: String,
        /// A note to tell keys apart (e.g. "billing system").
        #[arg(long, value_name = "TEXT")]
        name: Option<String>,
    },
    /// List keys (prefix, operator, user, name, created, revoked), never the keys.
    List {
        #[arg(long, value_name = "CODE")]
        operator: Option<String>,
    },
    /// Revoke the key with this prefix (its first 8 characters) and every token issued
    /// from it, at once.
    Revoke { prefix: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum PromotionCommand {
    /// Create a promotion of an operator.
    Add {
        /// The promotion's code, unique within the operator.
        code: String,
        #[arg(long, value_name = "CODE")]
        operator: String,
        #[arg(long, value_name = "NAME")]
        name: String,
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// From when it is effective: YYYY-MM-DDTHH:MM:SS UTC, or YYYY-MM-DD (00:00:00).
        #[arg(long, value_name = "T")]
        effective_from: String,
        /// When it stops being effective (same forms); none: no end.
        #[arg(long, value_name = "T")]
        expires_on: Option<String>,
    },
    /// List every promotion, effective or not, with its window.
    List {
        #[arg(long, value_name = "CODE")]
        operator: Option<String>,
    },
}

/// A time on the command line: `YYYY-MM-DDTHH:MM:SS` UTC (a final `Z` allowed), or
/// `YYYY-MM-DD` meaning 00:00:00 that day.
fn time(text: &str) -> Result<Timestamp, String> {
    if text.len() == 10 {
        return super::input::timestamp(&format!("{text}T00:00:00"))
            .map_err(|_| super::input::date(text).err().unwrap_or_default());
    }
    super::input::timestamp(text)
}

async fn operator_id(store: &dyn Database, code: &str) -> anyhow::Result<i64> {
    let parsed = OperatorCode::parse(code).map_err(|e| anyhow!("operator code '{code}' {e}"))?;
    Ok(store
        .operator_by_code(&parsed)
        .await?
        .ok_or_else(|| anyhow!("no operator '{code}'"))?
        .id)
}

pub(super) async fn key(settings: &Settings, command: KeyCommand) -> anyhow::Result<()> {
    // An imported key is read, and judged, before the database is opened.
    let imported = match &command {
        KeyCommand::Import { .. } => Some(read_key()?),
        _ => None,
    };
    let store = open_store(settings).await?;
    if let (
        Some(key),
        KeyCommand::Import {
            operator,
            user,
            name,
        },
    ) = (imported, &command)
    {
        let done = key_import(
            settings,
            store.as_ref(),
            key,
            operator,
            user,
            name.as_deref(),
        )
        .await;
        store.close().await;
        return done;
    }
    let done = key_on(settings, store.as_ref(), command).await;
    store.close().await;
    done
}

async fn key_on(
    settings: &Settings,
    store: &dyn Database,
    command: KeyCommand,
) -> anyhow::Result<()> {
    match command {
        KeyCommand::Add {
            operator,
            user,
            name,
        } => {
            let code = OperatorCode::parse(&operator)
                .map_err(|e| anyhow!("operator code '{operator}' {e}"))?;
            let username = Username::parse(&user).map_err(|e| anyhow!("username '{user}' {e}"))?;
            let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
            let found = store
                .login_user(&code, &username)
                .await?
                .ok_or_else(|| anyhow!("no user '{user}' of operator '{operator}'"))?;
            // The prefix names a key to `key revoke`; a new key never shares one, so
            // every key chargegate makes can be revoked by its prefix.
            let taken: std::collections::HashSet<String> = store
                .api_keys(None)
                .await?
                .into_iter()
                .map(|k| k.prefix)
                .collect();
            let key = loop {
                let mut bytes = [0u8; KEY_BYTES];
                getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness: {e}"))?;
                let key = ApiKey::from_random_bytes(bytes);
                if !taken.contains(&key.prefix()) {
                    break key;
                }
            };
            store
                .create_api_key(&NewApiKey {
                    operator_id: found.operator_id,
                    user_id: found.user_id,
                    prefix: key.prefix(),
                    hash: key.hash(),
                    name,
                    created_at: Timestamp::now(),
                })
                .await?;
            eprintln!(
                "created key {} for user {user} of operator {operator} in {}; it is shown \
                 once, below, and cannot be shown again",
                key.prefix(),
                database_label(&settings.database_url)
            );
            println!("{}", key.expose());
            Ok(())
        }
        // Handled by `key` itself, with the key read first.
        KeyCommand::Import { .. } => Ok(()),
        KeyCommand::List { operator } => {
            let id = match &operator {
                Some(code) => Some(operator_id(store, code).await?),
                None => None,
            };
            let keys = store.api_keys(id).await?;
            println!("prefix\toperator\tuser\tname\tcreated\trevoked");
            for k in keys {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    k.prefix,
                    k.operator,
                    k.username,
                    k.name.as_deref().unwrap_or("-"),
                    k.created_at,
                    k.revoked_at.map_or("-".to_owned(), |t| t.to_string())
                );
            }
            Ok(())
        }
        KeyCommand::Revoke { prefix } => {
            match store.revoke_api_key(&prefix, Timestamp::now()).await? {
                RevokeOutcome::Revoked { tokens } => {
                    println!("revoked key {prefix} and {tokens} token(s) issued from it");
                    Ok(())
                }
                RevokeOutcome::AlreadyRevoked => {
                    println!("key {prefix} was already revoked");
                    Ok(())
                }
                RevokeOutcome::NotFound => bail!("no key with prefix '{prefix}'"),
                RevokeOutcome::Ambiguous(n) => bail!(
                    "{n} keys have the prefix '{prefix}'; nothing was revoked (see chargegate key list)"
                ),
            }
        }
    }
}

/// The key to import: typed without echo on a terminal, else one line of standard input
/// without its line ending. Never an argument, where `ps` would show it.
fn read_key() -> anyhow::Result<ApiKey> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    let line = if stdin.is_terminal() {
        rpassword::prompt_password("key: ").context("cannot read the key from the terminal")?
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the key from standard input")?;
        line
    };
    let key = line.strip_suffix('\n').unwrap_or(&line);
    let key = key.strip_suffix('\r').unwrap_or(key);
    ApiKey::import(key).map_err(|e| anyhow!("{e}; nothing was imported"))
}

async fn key_import(
    settings: &Settings,
    store: &dyn Database,
    key: ApiKey,
    operator: &str,
    user: &str,
    name: Option<&str>,
) -> anyhow::Result<()> {
    let code =
        OperatorCode::parse(operator).map_err(|e| anyhow!("operator code '{operator}' {e}"))?;
    let username = Username::parse(user).map_err(|e| anyhow!("username '{user}' {e}"))?;
    let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    let found = store.login_user(&code, &username).await?.ok_or_else(|| {
        anyhow!("no user '{user}' of operator '{operator}'; nothing was imported")
    })?;
    if store.key_login(&key.hash()).await?.is_some() {
        bail!("this key is already stored; nothing was imported");
    }
    // `key revoke` names a key by its prefix: two keys sharing one could not be told apart.
    let prefix = key.prefix();
    if store
        .api_keys(None)
        .await?
        .iter()
        .any(|k| k.prefix == prefix)
    {
        bail!("another key already has the prefix '{prefix}'; nothing was imported");
    }
    store
        .create_api_key(&NewApiKey {
            operator_id: found.operator_id,
            user_id: found.user_id,
            prefix: prefix.clone(),
            hash: key.hash(),
            name,
            created_at: Timestamp::now(),
        })
        .await
        .map_err(|e| match e {
            // Imported at the same moment by someone else.
            StoreError::Conflict(_) => anyhow!("this key is already stored; nothing was imported"),
            other => anyhow!(other),
        })?;
    println!(
        "imported key {prefix} for user {user} of operator {operator} in {}",
        database_label(&settings.database_url)
    );
    Ok(())
}

pub(super) async fn promotion(
    settings: &Settings,
    command: PromotionCommand,
) -> anyhow::Result<()> {
    // Check everything typed before opening the database.
    if let PromotionCommand::Add {
        code,
        name,
        effective_from,
        expires_on,
        ..
    } = &command
    {
        PromotionCode::parse(code.as_str()).map_err(|e| anyhow!("promotion code '{code}' {e}"))?;
        if name.trim().is_empty() {
            bail!("--name must not be empty");
        }
        let from = time(effective_from).map_err(|e| anyhow!("--effective-from: {e}"))?;
        if let Some(until) = expires_on {
            let until = time(until).map_err(|e| anyhow!("--expires-on: {e}"))?;
            if until <= from {
                bail!("--expires-on must be after --effective-from");
            }
        }
    }
    let store = open_store(settings).await?;
    let done = promotion_on(settings, store.as_ref(), command).await;
    store.close().await;
    done
}

async fn promotion_on(
    settings: &Settings,
    store: &dyn Database,
    command: PromotionCommand,
) -> anyhow::Result<()> {
    match command {
        PromotionCommand::Add {
            code,
            operator,
            name,
            description,
            effective_from,
            expires_on,
        } => {
            let id = operator_id(store, &operator).await?;
            let promotion = Promotion {
                code: PromotionCode::parse(code.as_str())
                    .map_err(|e| anyhow!("promotion code '{code}' {e}"))?,
                name: name.trim().to_owned(),
                description: description.filter(|d| !d.is_empty()),
                effective_from: time(&effective_from).map_err(|e| anyhow!(e))?,
                expires_on: expires_on
                    .as_deref()
                    .map(time)
                    .transpose()
                    .map_err(|e| anyhow!(e))?,
            };
            store
                .create_promotion(&NewPromotion {
                    operator_id: id,
                    promotion,
                    created_at: Timestamp::now(),
                })
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(_) => conflict_as_message(e),
                    other => anyhow!(other),
                })
                .context("cannot create the promotion")?;
            println!(
                "created promotion {code} of operator {operator} in {}",
                database_label(&settings.database_url)
            );
            Ok(())
        }
        PromotionCommand::List { operator } => {
            let id = match &operator {
                Some(code) => Some(operator_id(store, code).await?),
                None => None,
            };
            println!("operator\tcode\tname\teffective_from\texpires_on\tdescription");
            for (operator, p) in store.promotions(id).await? {
                println!(
                    "{operator}\t{}\t{}\t{}\t{}\t{}",
                    p.code,
                    p.name,
                    p.effective_from,
                    p.expires_on.map_or("-".to_owned(), |t| t.to_string()),
                    p.description.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
    }
}
