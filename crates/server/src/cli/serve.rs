//! `chargegate serve`: the demo data when asked for, then the server built by the
//! composition root, until SIGTERM or Ctrl-C.

use anyhow::{Context, anyhow};
use chargegate_store::DatabaseUrl;

use crate::config::Settings;
use crate::database::{database_label, naming_the_database, open_store, store_options};
use crate::demo;
use crate::server::Server;

pub(super) async fn serve(
    settings: Settings,
    with_demo: bool,
    simulate: bool,
) -> anyhow::Result<()> {
    // First, which build on which database: a relative path names a different file in
    // every directory.
    tracing::info!(
        version = crate::build::VERSION,
        commit = crate::build::COMMIT,
        built = crate::build::DATE,
        database = %database_label(&settings.database_url),
        "chargegate starting"
    );
    // Whether the database holds anything is an admin read that only `db copy`'s opening
    // offers (the serving store has no such method); done before the server's own store
    // opens, so the two never hold the database at once.
    let empty = if with_demo {
        let url = DatabaseUrl::parse(&settings.database_url)?;
        chargegate_store::copy::is_empty(&url, &store_options(&settings))
            .await
            .map_err(|e| naming_the_database(e, &settings.database_url, "cannot read database"))?
    } else {
        false
    };
    let store = open_store(&settings).await?;
    if with_demo {
        let prepared = demo::prepare(store.as_ref(), empty).await;
        if let Err(e) = prepared {
            store.close().await;
            return Err(match e {
                demo::DemoError::NotOurs(why) => anyhow!(
                    "serve --demo refused: in {}, {why}; the demo never touches data it did \
                     not create: run it on a database of its own, e.g. \
                     chargegate --database sqlite://demo.db serve --demo",
                    database_label(&settings.database_url)
                ),
                other => anyhow!(other).context("cannot create the demo data"),
            });
        }
    }
    let mut server = match Server::build(&settings, store.clone()).await {
        Ok(server) => server,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    let address = server.address();
    let shutdown = shutdown_signal();
    tracing::info!(
        %address,
        database = %database_label(&settings.database_url),
        backend = store.backend(),
        "chargegate serving"
    );
    if with_demo {
        // The demo password is in the README, not in the log: no log line carries one.
        tracing::info!(
            api = %format_args!("http://{address}{}/", crate::api::BASE),
            organisation = demo::OPERATOR,
            user = demo::USERNAME,
            "demo ready (the demo password is in the README)"
        );
    }
    if simulate {
        let key = demo::connector_key(store.as_ref())
            .await
            .context("cannot create the simulated Netflix side's connector key")?;
        server.simulate_netflix(key);
    }
    server.run_until(shutdown).await?;
    tracing::info!("chargegate stopped");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed when this is called, not
/// when the future is first polled, so a signal that arrives right after the "serving"
/// log line stops the server cleanly instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            let received = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = received(interrupt) => {},
                () = received(terminate) => {},
            }
        }
    };
    #[cfg(not(unix))]
    let signals = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    async move {
        signals.await;
        tracing::info!("shutting down: finishing requests in flight");
    }
}
