//! The `chargegate` command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use chargegate_core::store::{NewOperator, NewUser};
use chargegate_core::text::{OperatorCode, Username};
use chargegate_store::{DatabaseUrl, SqliteStore};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::auth::passwords;
use crate::config::{FlagOverrides, LogFormat, Settings};
use crate::database::{database_label, open_store, store_options};
use crate::telemetry;
use common::{conflict_as_message, read_password};

mod admin;
mod common;
mod connector;
pub mod csv_import;
mod input;
mod serve;
mod subscriptions;
mod token_secret;

#[derive(Debug, Parser)]
#[command(
    name = "chargegate",
    version = crate::build::LONG_VERSION,
    about = "A self-hosted, CRM.COM-compatible server for operators' Netflix charges",
    propagate_version = true
)]
struct Cli {
    /// Database URL: sqlite://PATH (a relative PATH is relative to the working directory;
    /// default sqlite://chargegate.db) or postgres://USER@HOST/DB [env: CHARGEGATE_DATABASE_URL]
    #[arg(long, global = true, value_name = "URL")]
    database: Option<String>,

    /// TOML configuration file, under environment variables and flags.
    #[arg(long, global = true, value_name = "PATH", env = "CHARGEGATE_CONFIG")]
    config: Option<PathBuf>,

    /// Log line format. [env: CHARGEGATE_LOG_FORMAT]
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<LogFormat>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (applies pending migrations first).
    Serve {
        /// Address to listen on. [env: CHARGEGATE_LISTEN, default 127.0.0.1:8080]
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Serve Prometheus metrics at GET /metrics on this separate address; off unless
        /// given. [env: CHARGEGATE_METRICS_LISTEN]
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<String>,
        /// Create, if absent, operator `pci`, user demo/demo and a few PENDING charges.
        #[arg(long)]
        demo: bool,
        /// Seconds a connection has to send a request head (also the idle keep-alive
        /// limit). [env: CHARGEGATE_HEADER_TIMEOUT, default 10]
        #[arg(long, value_name = "SECONDS")]
        header_timeout: Option<u64>,
        /// Seconds a request has to send its body. [env: CHARGEGATE_BODY_TIMEOUT,
        /// default 30]
        #[arg(long, value_name = "SECONDS")]
        body_timeout: Option<u64>,
        /// Connections open at once; more are refused with 503.
        /// [env: CHARGEGATE_MAX_CONNECTIONS, default 1000]
        #[arg(long, value_name = "N")]
        max_connections: Option<u32>,
        /// Seconds requests in flight may take after SIGTERM before connections are
        /// closed. [env: CHARGEGATE_SHUTDOWN_TIMEOUT, default 20]
        #[arg(long, value_name = "SECONDS")]
        shutdown_timeout: Option<u64>,
        /// Requests per second per operator; 0 = no limit.
        /// [env: CHARGEGATE_RATE_LIMIT, default 0]
        #[arg(long, value_name = "N")]
        rate_limit: Option<u32>,
        /// Do not serve the operator console at /console/. [env: CHARGEGATE_CONSOLE=false]
        #[arg(long)]
        no_console: bool,
        /// Push outbox events to this http:// or https:// URL, signed with
        /// CHARGEGATE_OUTBOX_WEBHOOK_SECRET. [env: CHARGEGATE_OUTBOX_WEBHOOK]
        #[arg(long, value_name = "URL")]
        outbox_webhook: Option<String>,
        /// Trust the CA certificates of this PEM file for an https:// webhook, besides
        /// the system's roots. [env: CHARGEGATE_OUTBOX_WEBHOOK_CA]
        #[arg(long, value_name = "FILE")]
        outbox_webhook_ca: Option<String>,
        /// With --demo: run a simulated Netflix side in this process, which raises
        /// charges, activates subscriptions and reads the outbox through the connector API.
        #[arg(long)]
        simulate_netflix: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage operators.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage charges.
    #[command(subcommand)]
    Charges(ChargesCommand),
    /// Manage web API keys (machine logins as a user).
    #[command(subcommand)]
    Key(subscriptions::KeyCommand),
    /// Manage promotions.
    #[command(subcommand)]
    Promotion(subscriptions::PromotionCommand),
    /// Manage the secret tokens are signed with (rotate it without logging anyone out).
    #[command(subcommand)]
    TokenSecret(token_secret::TokenSecretCommand),
    /// Manage connector keys (the Netflix side's API, /chargegate/v1/connector/).
    #[command(subcommand)]
    ConnectorKey(connector::ConnectorKeyCommand),
    /// Show configuration help.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Write a consistent copy of the SQLite database to PATH, safe while servers run.
    ///
    /// The copy is one snapshot, flushed to disk, that any server can serve as is. An
    /// existing file is never overwritten. For PostgreSQL, use pg_dump.
    Backup {
        /// Where to write the copy; must not exist yet.
        path: PathBuf,
    },
    /// Database maintenance.
    #[command(subcommand)]
    Db(DbCommand),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    ///
    /// For example: chargegate completions bash > /etc/bash_completion.d/chargegate
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. chargegate manpage > chargegate.1
    Manpage,
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Copy every row of --database into an empty database (SQLite <-> PostgreSQL).
    Copy {
        /// The target database URL; it must be empty (it is migrated first).
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// Create an operator.
    Add {
        /// Short code, sent by clients as `organisation` (letters, digits, - _ .).
        code: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// ISO-4217 code of the operator's local currency, e.g. EUR.
        #[arg(long, value_name = "CUR")]
        local_currency: String,
    },
    /// List operators with their counts of users and of charges by status.
    List,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user; the password is typed twice on a terminal (not shown), or read as one
    /// line from standard input.
    Add {
        username: String,
        /// Code of the operator the user belongs to.
        #[arg(long, value_name = "CODE")]
        operator: String,
    },
    /// List users with their operator, enabled flag, last login and lockout state.
    List {
        /// Only this operator's users.
        #[arg(long, value_name = "CODE")]
        operator: Option<String>,
    },
    /// Disable a user: logins refused and every token revoked, at once, on every server.
    Disable {
        username: String,
        #[arg(long, value_name = "CODE")]
        operator: String,
    },
    /// Enable a disabled user again (revoked tokens stay revoked).
    Enable {
        username: String,
        #[arg(long, value_name = "CODE")]
        operator: String,
    },
    /// Set a user's password: typed twice on a terminal (not shown), or one line of
    /// standard input. Revokes the user's tokens.
    Passwd {
        username: String,
        #[arg(long, value_name = "CODE")]
        operator: String,
    },
    /// Lift a login lockout: forget the user's failed logins.
    Unlock {
        username: String,
        #[arg(long, value_name = "CODE")]
        operator: String,
    },
}

#[derive(Debug, Subcommand)]
enum ChargesCommand {
    /// Load charges from a CSV file, all or nothing.
    Import { file: PathBuf },
    /// Show a charge and its whole history.
    Show {
        number: String,
        /// Print the JSON of GET /chargegate/v1/charges/show's `data` instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the reconciliation feed of a window (every status change) to standard output.
    ///
    /// Times are YYYY-MM-DDTHH:MM:SS in UTC, or YYYY-MM-DD meaning 00:00:00 that day; the
    /// window includes --from and excludes --to.
    Export {
        #[arg(long, value_name = "CODE")]
        operator: String,
        #[arg(long, value_name = "TIME")]
        from: String,
        #[arg(long, value_name = "TIME")]
        to: String,
        #[arg(long, value_enum, default_value = "csv")]
        format: admin::ExportFormat,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print a commented example configuration file with every default.
    Example,
}

/// The command line's definition, as completions and the manual page describe it.
pub fn command() -> clap::Command {
    Cli::command()
}

/// The definition with `--database`'s help naming the file the default means in this
/// directory: a relative path is relative to wherever a command runs.
fn command_here() -> clap::Command {
    let default = Settings::default().database_url;
    let here = database_label(&default);
    command().mut_arg("database", |arg| {
        arg.help(format!(
            "Database URL: sqlite://PATH or postgres://USER@HOST/DB [env: CHARGEGATE_DATABASE_URL] \
             [default: {default}, here {here}]"
        ))
    })
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let parsed = command_here()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the cause chain joined by ": ".
            eprintln!("chargegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version print as clap prints them; a usage error is one line, like every
/// other failure, and points at the help of the command at fault.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
        }
        _ => {
            // args_os: a file name that is not UTF-8 must not make this path panic.
            let args: Vec<String> = std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let command = subcommand_named(&args);
            eprintln!(
                "chargegate: {}",
                one_line(&e.render().to_string(), &command)
            );
            ExitCode::from(2)
        }
    }
}

/// Clap's usage error on one line, keeping what matters: the problem with the list it
/// introduces (the missing arguments, the possible values), the "did you mean" tip, and a
/// pointer to the help of `command`, the subcommand at fault.
fn one_line(rendered: &str, command: &str) -> String {
    // Each part is a line of the message with the indented lines that continue it.
    let mut parts: Vec<(String, Vec<String>)> = Vec::new();
    let mut in_usage = false;
    for line in rendered.lines() {
        let text = line.trim();
        if text.is_empty() {
            in_usage = false;
            continue;
        }
        if text.starts_with("Usage:") {
            in_usage = true;
            continue;
        }
        if in_usage || text.starts_with("For more information") {
            continue;
        }
        let text = text.strip_prefix("error: ").unwrap_or(text).to_owned();
        match parts.last_mut() {
            // An item of the list the line before introduces, or its possible values.
            Some((_, items)) if line.starts_with(' ') && !text.starts_with("tip:") => {
                items.push(text);
            }
            _ => parts.push((text, Vec::new())),
        }
    }
    let parts: Vec<String> = parts
        .into_iter()
        .map(|(head, items)| match items.as_slice() {
            [] => head,
            _ if head.ends_with(':') => format!("{head} {}", items.join(", ")),
            _ => format!("{head} {}", items.join(" ")),
        })
        .collect();
    let problem = if parts.is_empty() {
        "invalid arguments".to_owned()
    } else {
        parts.join("; ")
    };
    format!("{problem} (see '{command} --help')")
}

/// The subcommand the arguments name, e.g. `chargegate operator add`: the words that are
/// subcommands, in order, skipping options and their values.
fn subcommand_named(args: &[String]) -> String {
    let root = command();
    let mut current = &root;
    let mut path = vec![root.get_name().to_owned()];
    let mut words = args.iter().skip(1);
    while let Some(word) = words.next() {
        if let Some(flag) = word.strip_prefix("--") {
            let takes_value = !flag.contains('=')
                && current
                    .get_arguments()
                    .chain(root.get_arguments())
                    .any(|a| a.get_long() == Some(flag) && a.get_action().takes_values());
            if takes_value {
                words.next();
            }
            continue;
        }
        if word.starts_with('-') {
            continue;
        }
        match current.find_subcommand(word) {
            Some(sub) => {
                path.push(sub.get_name().to_owned());
                current = sub;
            }
            None => break,
        }
    }
    path.join(" ")
}

/// Writes a document to standard output. A reader that stops early (`| head`) is not an
/// error worth a message.
fn print_document(document: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(document).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow!(e).context("cannot write to standard output"))
        }
        _ => Ok(()),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Commands that print documents: no settings, no database.
    match cli.command {
        Command::Config(ConfigCommand::Example) => {
            return print_document(crate::config::example().as_bytes());
        }
        Command::Completions { shell } => {
            // Into memory first: the generator panics when it cannot write.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "chargegate", &mut script);
            return print_document(&script);
        }
        Command::Manpage => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command())
                .render(&mut page)
                .context("cannot render the manual page")?;
            return print_document(&page);
        }
        _ => {}
    }
    let flags = FlagOverrides {
        database_url: cli.database.clone(),
        listen: match &cli.command {
            Command::Serve { listen, .. } => listen.clone(),
            _ => None,
        },
        metrics_listen: match &cli.command {
            Command::Serve { metrics_listen, .. } => metrics_listen.clone(),
            _ => None,
        },
        log_format: cli.log_format,
        ..FlagOverrides::default()
    };
    let flags = match &cli.command {
        Command::Serve {
            header_timeout,
            body_timeout,
            max_connections,
            shutdown_timeout,
            rate_limit,
            no_console,
            outbox_webhook,
            outbox_webhook_ca,
            ..
        } => FlagOverrides {
            header_timeout: *header_timeout,
            body_timeout: *body_timeout,
            max_connections: *max_connections,
            shutdown_timeout: *shutdown_timeout,
            rate_limit: *rate_limit,
            console: no_console.then_some(false),
            outbox_webhook: outbox_webhook.clone(),
            outbox_webhook_ca: outbox_webhook_ca.clone(),
            ..flags
        },
        _ => flags,
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    let settings = Settings::load(cli.config.as_deref(), &env, &flags).map_err(|e| anyhow!(e))?;
    telemetry::init(settings.log_format, &settings.log).map_err(|e| anyhow!(e))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(dispatch(cli.command, settings))
}

async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            demo,
            simulate_netflix,
            ..
        } => {
            if simulate_netflix && !demo {
                bail!("--simulate-netflix needs --demo: it acts for the demo operator");
            }
            serve::serve(settings, demo, simulate_netflix).await
        }
        Command::Migrate => {
            open_store(&settings).await?.close().await;
            println!(
                "database {} is up to date",
                database_label(&settings.database_url)
            );
            Ok(())
        }
        Command::Operator(OperatorCommand::Add {
            code,
            name,
            local_currency,
        }) => operator_add(&settings, &code, &name, &local_currency).await,
        Command::User(UserCommand::Add { username, operator }) => {
            user_add(&settings, &username, &operator).await
        }
        Command::Operator(OperatorCommand::List) => admin::operator_list(&settings).await,
        Command::User(UserCommand::List { operator }) => {
            admin::user_list(&settings, operator.as_deref()).await
        }
        Command::User(UserCommand::Disable { username, operator }) => {
            admin::user_set_enabled(&settings, &username, &operator, false).await
        }
        Command::User(UserCommand::Enable { username, operator }) => {
            admin::user_set_enabled(&settings, &username, &operator, true).await
        }
        Command::User(UserCommand::Passwd { username, operator }) => {
            admin::user_passwd(&settings, &username, &operator).await
        }
        Command::User(UserCommand::Unlock { username, operator }) => {
            admin::user_unlock(&settings, &username, &operator).await
        }
        Command::Charges(ChargesCommand::Import { file }) => charges_import(&settings, &file).await,
        Command::Charges(ChargesCommand::Show { number, json }) => {
            admin::charges_show(&settings, &number, json).await
        }
        Command::Charges(ChargesCommand::Export {
            operator,
            from,
            to,
            format,
        }) => admin::charges_export(&settings, &operator, &from, &to, format).await,
        Command::Key(command) => subscriptions::key(&settings, command).await,
        Command::Promotion(command) => subscriptions::promotion(&settings, command).await,
        Command::TokenSecret(command) => token_secret::token_secret(&settings, command).await,
        Command::ConnectorKey(command) => connector::connector_key(&settings, command).await,
        Command::Config(ConfigCommand::Example)
        | Command::Completions { .. }
        | Command::Manpage => Ok(()),
        Command::Backup { path } => backup(&settings, &path).await,
        Command::Db(DbCommand::Copy { to }) => db_copy(&settings, &to).await,
    }
}

async fn operator_add(
    settings: &Settings,
    code: &str,
    name: &str,
    local_currency: &str,
) -> anyhow::Result<()> {
    let code = OperatorCode::parse(code).map_err(|e| anyhow!("operator code '{code}' {e}"))?;
    let name = name.trim();
    if name.is_empty() {
        bail!("--name must not be empty");
    }
    let local_currency =
        input::currency(local_currency).map_err(|e| anyhow!("--local-currency: {e}"))?;
    let store = open_store(settings).await?;
    let operator = store
        .create_operator(&NewOperator {
            code,
            name: name.to_owned(),
            local_currency,
        })
        .await
        .map_err(conflict_as_message)?;
    store.close().await;
    println!(
        "created operator {} ({}, local currency {}) in {}",
        operator.code,
        operator.name,
        operator.local_currency,
        database_label(&settings.database_url)
    );
    Ok(())
}

async fn user_add(settings: &Settings, username: &str, operator: &str) -> anyhow::Result<()> {
    let username = Username::parse(username).map_err(|e| anyhow!("username '{username}' {e}"))?;
    let code =
        OperatorCode::parse(operator).map_err(|e| anyhow!("operator code '{operator}' {e}"))?;
    let password = read_password("nothing was created")?;
    let store = open_store(settings).await?;
    let operator = store
        .operator_by_code(&code)
        .await?
        .ok_or_else(|| anyhow!("no operator '{code}' (create it with: chargegate operator add)"))?;
    let password_hash = tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .context("password hashing stopped")??;
    store
        .create_user(&NewUser {
            operator_id: operator.id,
            username: username.clone(),
            password_hash,
        })
        .await
        .map_err(conflict_as_message)?;
    store.close().await;
    println!(
        "created user {username} of operator {code} in {}",
        database_label(&settings.database_url)
    );
    Ok(())
}

/// `chargegate backup PATH`: `VACUUM INTO` a new file, which any server can serve as is.
async fn backup(settings: &Settings, target: &Path) -> anyhow::Result<()> {
    let url = DatabaseUrl::parse(&settings.database_url)?;
    let source = match &url {
        DatabaseUrl::Sqlite(path) => path,
        DatabaseUrl::Postgres(_) => {
            bail!("backup copies SQLite databases; back up PostgreSQL with pg_dump")
        }
    };
    // Opening would create a missing database; a backup of nothing is a mistake.
    if !source.is_file() {
        bail!(
            "no SQLite database at {}",
            database_label(&settings.database_url)
        );
    }
    // Said here in words, before the database is involved: the store would report a
    // failure to create the file as the database being unavailable.
    let directory = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !directory.is_dir() {
        bail!(
            "cannot back up to {}: the directory {} does not exist",
            target.display(),
            directory.display()
        );
    }
    let store = SqliteStore::open(source, &store_options(settings))
        .await
        .with_context(|| format!("cannot open database {url}"))?;
    store
        .backup(target)
        .await
        .map_err(conflict_as_message)
        .with_context(|| {
            format!(
                "cannot back up {} to {}",
                database_label(&settings.database_url),
                target.display()
            )
        })?;
    println!(
        "backed up {} to {}",
        database_label(&settings.database_url),
        target.display()
    );
    Ok(())
}

/// How many problems of a refused import are listed one by one.
const MAX_REPORTED_PROBLEMS: usize = 20;

async fn charges_import(settings: &Settings, file: &Path) -> anyhow::Result<()> {
    // Before the database is opened (and perhaps created): a typo in the file name must
    // not leave an empty database behind.
    let readable = std::fs::File::open(file).and_then(|f| f.metadata());
    match readable {
        Ok(m) if m.is_file() => {}
        Ok(_) => bail!("cannot read {}: it is not a file", file.display()),
        Err(e) => bail!("cannot read {}: {e}", file.display()),
    }
    let store = open_store(settings).await?;
    let imported = csv_import::import(store.as_ref(), file).await;
    store.close().await;
    match imported {
        Ok(summary) => {
            println!(
                "imported {} charge(s), skipped {} already present, in {}",
                summary.added,
                summary.skipped,
                database_label(&settings.database_url)
            );
            Ok(())
        }
        Err(csv_import::ImportError::Rejected(problems)) => {
            // Enough to see the pattern; a file of bad rows must not flood the terminal.
            for p in problems.iter().take(MAX_REPORTED_PROBLEMS) {
                eprintln!("{p}");
            }
            if let Some(more) = problems.len().checked_sub(MAX_REPORTED_PROBLEMS)
                && more > 0
            {
                eprintln!("... and {more} more problem(s)");
            }
            bail!(
                "import of {} refused: {} problem(s); nothing was imported",
                file.display(),
                problems.len()
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// `db copy --to URL`: streams a consistent snapshot of the source into the empty target,
/// which commits only once everything arrived.
async fn db_copy(settings: &Settings, to: &str) -> anyhow::Result<()> {
    let source = DatabaseUrl::parse(&settings.database_url)?;
    let target = DatabaseUrl::parse(to)?;
    if source == target {
        bail!("--to names the source database itself");
    }
    let summary = chargegate_store::copy::copy(&source, &target, &store_options(settings))
        .await
        .map_err(conflict_as_message)?;
    for (table, rows) in &summary {
        println!("{table}: {rows} row(s)");
    }
    println!(
        "copied {} into {}",
        database_label(&settings.database_url),
        database_label(to)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn the_subcommand_at_fault_is_found_past_options_and_their_values() {
        for (line, named) in [
            ("chargegate operator add pci", "chargegate operator add"),
            (
                "chargegate --database serve migrate --x",
                "chargegate migrate",
            ),
            ("chargegate --database=x.db user add", "chargegate user add"),
            ("chargegate serv", "chargegate"),
            (
                "chargegate -h charges import a b",
                "chargegate charges import",
            ),
        ] {
            assert_eq!(subcommand_named(&args(line)), named, "{line}");
        }
    }

    #[test]
    fn a_usage_error_keeps_its_list_and_tip_on_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  \
                        --name <NAME>\n  --local-currency <CUR>\n\nUsage: chargegate operator \
                        add --name <NAME> --local-currency <CUR> <CODE>\n\nFor more \
                        information, try '--help'.\n";
        assert_eq!(
            one_line(rendered, "chargegate operator add"),
            "the following required arguments were not provided: --name <NAME>, \
             --local-currency <CUR> (see 'chargegate operator add --help')"
        );
        let rendered = "error: unexpected argument '--listn' found\n\n  tip: a similar \
                        argument exists: '--listen'\n\nUsage: chargegate serve --listen \
                        <ADDR>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered, "chargegate serve"),
            "unexpected argument '--listn' found; tip: a similar argument exists: \
             '--listen' (see 'chargegate serve --help')"
        );
    }
}
