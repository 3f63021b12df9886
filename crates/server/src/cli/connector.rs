//! `chargegate connector-key add|list|revoke`: the keys of the connector API.

use anyhow::{anyhow, bail};
use chargegate_core::Database;
use chargegate_core::apikey::{ApiKey, KEY_BYTES, RevokeOutcome};
use chargegate_core::clock::Timestamp;
use chargegate_core::connector::{CONNECTOR_KEY_MARK, NewConnectorKey};
use chargegate_core::text::OperatorCode;
use clap::Subcommand;

use crate::config::Settings;
use crate::database::{database_label, open_store};

#[derive(Debug, Subcommand)]
pub(super) enum ConnectorKeyCommand {
    /// Create a key for an operator's connector (the process that talks to Netflix); it
    /// is printed once and never again.
    Add {
        /// Code of the operator the key speaks for.
        #[arg(long, value_name = "CODE")]
        operator: String,
        /// A note to tell keys apart (e.g. "netflix connector, site A").
        #[arg(long, value_name = "TEXT")]
        name: Option<String>,
    },
    /// List connector keys (prefix, operator, name, created, revoked), never the keys.
    List {
        #[arg(long, value_name = "CODE")]
        operator: Option<String>,
    },
    /// Revoke the connector key with this prefix (its first 8 characters), at once.
    Revoke { prefix: String },
}

pub(super) async fn connector_key(
    settings: &Settings,
    command: ConnectorKeyCommand,
) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let done = run(settings, store.as_ref(), command).await;
    store.close().await;
    done
}

async fn operator_id(store: &dyn Database, code: &str) -> anyhow::Result<i64> {
    let parsed = OperatorCode::parse(code).map_err(|e| anyhow!("operator code '{code}' {e}"))?;
    Ok(store
        .operator_by_code(&parsed)
        .await?
        .ok_or_else(|| anyhow!("no operator '{code}'"))?
        .id)
}

async fn run(
    settings: &Settings,
    store: &dyn Database,
    command: ConnectorKeyCommand,
) -> anyhow::Result<()> {
    match command {
        ConnectorKeyCommand::Add { operator, name } => {
            let operator_id = operator_id(store, &operator).await?;
            let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
            // A new key never shares a prefix, so every key can be revoked by it.
            let taken: std::collections::HashSet<String> = store
                .connector_keys(None)
                .await?
                .into_iter()
                .map(|k| k.prefix)
                .collect();
            let key = loop {
                let mut bytes = [0u8; KEY_BYTES];
                getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness: {e}"))?;
                let key = ApiKey::marked(CONNECTOR_KEY_MARK, bytes);
                if !taken.contains(&key.prefix()) {
                    break key;
                }
            };
            store
                .create_connector_key(&NewConnectorKey {
                    operator_id,
                    prefix: key.prefix(),
                    hash: key.hash(),
                    name,
                    created_at: Timestamp::now(),
                })
                .await?;
            eprintln!(
                "created connector key {} for operator {operator} in {}; it is shown once, \
                 below, and cannot be shown again",
                key.prefix(),
                database_label(&settings.database_url)
            );
            println!("{}", key.expose());
            Ok(())
        }
        ConnectorKeyCommand::List { operator } => {
            let id = match &operator {
                Some(code) => Some(operator_id(store, code).await?),
                None => None,
            };
            println!("prefix\toperator\tname\tcreated\trevoked");
            for k in store.connector_keys(id).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.prefix,
                    k.operator,
                    k.name.as_deref().unwrap_or("-"),
                    k.created_at,
                    k.revoked_at.map_or("-".to_owned(), |t| t.to_string())
                );
            }
            Ok(())
        }
        ConnectorKeyCommand::Revoke { prefix } => {
            match store
                .revoke_connector_key(&prefix, Timestamp::now())
                .await?
            {
                RevokeOutcome::Revoked { .. } => {
                    println!("revoked connector key {prefix}");
                    Ok(())
                }
                RevokeOutcome::AlreadyRevoked => {
                    println!("connector key {prefix} was already revoked");
                    Ok(())
                }
                RevokeOutcome::NotFound => bail!("no connector key with prefix '{prefix}'"),
                RevokeOutcome::Ambiguous(n) => bail!(
                    "{n} connector keys have the prefix '{prefix}'; nothing was revoked \
                     (see chargegate connector-key list)"
                ),
            }
        }
    }
}
