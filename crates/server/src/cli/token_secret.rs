//! `chargegate token-secret rotate|list`: the secrets tokens are signed with (see
//! [`crate::jwt`]).

use anyhow::{anyhow, bail};
use chargegate_core::clock::Timestamp;
use chargegate_core::store::TokenSecret;
use clap::Subcommand;

use crate::auth::jwt::{self, ROTATION_SLACK_SECONDS};
use crate::config::Settings;
use crate::database::{database_label, open_store};

#[derive(Debug, Subcommand)]
pub(super) enum TokenSecretCommand {
    /// Start signing tokens with a new secret, without logging anyone out.
    ///
    /// Every server on the database signs with the new secret from its next login on;
    /// tokens signed with the previous one stay valid until they expire (at most one
    /// token lifetime). Do it when a secret may have leaked, or as routine.
    Rotate,
    /// List the secrets' generations and dates, never the secrets.
    List,
}

pub(super) async fn token_secret(
    settings: &Settings,
    command: TokenSecretCommand,
) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let done = async {
        let secrets = store.token_secrets().await?;
        match command {
            TokenSecretCommand::Rotate => {
                let generation = secrets.last().map_or(1, |s| s.generation + 1);
                let secret = jwt::new_secret().map_err(|e| anyhow!("no randomness: {e}"))?;
                let added = store
                    .add_token_secret(&TokenSecret {
                        generation,
                        secret,
                        created_at: Timestamp::now(),
                    })
                    .await?;
                if !added {
                    bail!(
                        "another server or rotation added generation {generation} at the same \
                         moment; nothing changed here, run the command again to rotate once more"
                    );
                }
                println!(
                    "tokens are now signed with secret generation {generation} in {}; tokens \
                     signed before stay valid until they expire",
                    database_label(&settings.database_url)
                );
            }
            TokenSecretCommand::List => {
                println!("generation\tcreated\tsigns");
                for (i, s) in secrets.iter().enumerate() {
                    let signs = match secrets.get(i + 1) {
                        None => "new tokens".to_owned(),
                        Some(next) => format!(
                            "nothing; vouches for tokens issued before {}",
                            next.created_at.plus_seconds(ROTATION_SLACK_SECONDS)
                        ),
                    };
                    println!("{}\t{}\t{signs}", s.generation, s.created_at);
                }
                if secrets.is_empty() {
                    eprintln!("no secret yet: the first login makes one");
                }
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    done
}
