//! Settings: built-in defaults, then an optional TOML file (`--config` /
//! `CHARGEGATE_CONFIG`), then `CHARGEGATE_*` environment variables, then command-line
//! flags; each layer overrides the one before. An unknown key in the file or an unknown
//! `CHARGEGATE_*` variable is an error naming it, not silently ignored: a typo in a
//! setting should not quietly fall back to a default.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use std::collections::BTreeMap;

use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::console::settings::ConsoleSettings;
pub use crate::console::settings::SecureCookies;
use crate::edge::{EdgeSettings, HttpErrors};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Every setting, with its default. Keys match the environment variables without their
/// `CHARGEGATE_` prefix, in lower case.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `sqlite://PATH` (created if missing) or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`.
    pub database_url: String,
    /// Address the API listens on.
    pub listen: String,
    /// Address of the separate Prometheus listener; empty = off.
    pub metrics_listen: String,
    /// Token lifetime from issue, in seconds.
    pub token_ttl: i64,
    /// Consecutive failed logins of one organisation+username before it is locked out.
    pub login_max_failures: u32,
    /// How long a lockout lasts, in seconds.
    pub login_lockout: i64,
    /// `pretty` or `json`.
    pub log_format: LogFormat,
    /// Log filter: `info`, `warn`, `chargegate=debug,sqlx=warn`, ….
    pub log: String,
    /// Database connections per pool (PostgreSQL) or reader connections (SQLite).
    pub db_max_connections: u32,
    /// Seconds to wait for a connection, a lock, or (PostgreSQL) a statement before
    /// answering 503 SERVICE_UNAVAILABLE.
    pub db_timeout: u64,
    /// Seconds a connection has to send a complete request head, from its accept or from
    /// the previous response (so also how long an idle kept-alive connection stays).
    pub header_timeout: u64,
    /// Seconds a request has to send its whole body, from its head.
    pub body_timeout: u64,
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: u32,
    /// Seconds requests in flight may take after a shutdown begins; then every remaining
    /// connection is closed.
    pub shutdown_timeout: u64,
    /// Largest request head (request line and headers) in bytes; larger is 431.
    pub max_header_bytes: u32,
    /// Longest request target (path and query) in bytes; longer is 414.
    pub max_url_bytes: u32,
    /// Requests per second each operator may make on average; 0 = no limit.
    pub rate_limit: u32,
    /// Requests an operator may make at once above the average; 0 = `rate_limit`.
    pub rate_limit_burst: u32,
    /// Password checks (Argon2, 19 MiB each) running at once.
    pub password_checks: u32,
    /// `rest`: errors carry the HTTP status of their code; `crm`: every envelope is
    /// answered with HTTP 200, as clients written for CRM.COM expect.
    pub http_errors: HttpErrors,
    /// Whether `/console/` is served (`serve --no-console` turns it off).
    pub console: bool,
    /// When console cookies carry `Secure`: `true`, `false`, or `auto` (the request came
    /// over HTTPS, as a trusted proxy says).
    pub console_secure_cookies: SecureCookies,
    /// A console session's lifetime from sign-in, in seconds.
    pub console_session_ttl: i64,
    /// Seconds a console session may go unused before it ends.
    pub console_idle_timeout: i64,
    /// IP addresses of reverse proxies whose `X-Forwarded-Proto` is believed,
    /// comma-separated; empty = none.
    pub trusted_proxies: String,
    /// `http://` or `https://HOST[:PORT]/PATH` to push outbox events to; empty = no push.
    /// Logged as its scheme, host and port only.
    pub outbox_webhook: String,
    /// The HMAC-SHA256 key of the webhook's signatures. Never logged.
    pub outbox_webhook_secret: String,
    /// A PEM file of CA certificates trusted for an `https://` webhook besides the
    /// system's roots; empty = the system's roots only.
    pub outbox_webhook_ca: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: "sqlite://chargegate.db".into(),
            listen: "127.0.0.1:8080".into(),
            metrics_listen: String::new(),
            token_ttl: 7200,
            login_max_failures: 10,
            login_lockout: 900,
            log_format: LogFormat::Pretty,
            log: "info,sqlx=warn".into(),
            db_max_connections: 8,
            db_timeout: 5,
            header_timeout: 10,
            body_timeout: 30,
            max_connections: 1000,
            shutdown_timeout: 20,
            max_header_bytes: 16 * 1024,
            max_url_bytes: 8 * 1024,
            rate_limit: 0,
            rate_limit_burst: 0,
            password_checks: 2,
            http_errors: HttpErrors::Rest,
            console: true,
            console_secure_cookies: SecureCookies::Auto,
            console_session_ttl: 8 * 3600,
            console_idle_timeout: 30 * 60,
            trusted_proxies: String::new(),
            outbox_webhook: String::new(),
            outbox_webhook_secret: String::new(),
            outbox_webhook_ca: String::new(),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field(
                "database_url",
                &chargegate_store::redact(&self.database_url),
            )
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("token_ttl", &self.token_ttl)
            .field("login_max_failures", &self.login_max_failures)
            .field("login_lockout", &self.login_lockout)
            .field("log_format", &self.log_format)
            .field("log", &self.log)
            .field("db_max_connections", &self.db_max_connections)
            .field("db_timeout", &self.db_timeout)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("max_connections", &self.max_connections)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_url_bytes", &self.max_url_bytes)
            .field("rate_limit", &self.rate_limit)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("password_checks", &self.password_checks)
            .field("http_errors", &self.http_errors)
            .field("console", &self.console)
            .field("console_secure_cookies", &self.console_secure_cookies)
            .field("console_session_ttl", &self.console_session_ttl)
            .field("console_idle_timeout", &self.console_idle_timeout)
            .field("trusted_proxies", &self.trusted_proxies)
            .field(
                "outbox_webhook",
                &crate::jobs::webhook_client::loggable_text(&self.outbox_webhook),
            )
            .field(
                "outbox_webhook_secret",
                &if self.outbox_webhook_secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("outbox_webhook_ca", &self.outbox_webhook_ca)
            .finish()
    }
}

/// Values given as command-line flags; `None` leaves the lower layers' value.
#[derive(Debug, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox_webhook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbox_webhook_ca: Option<String>,
}

/// Environment variables with the prefix that are not settings.
const NOT_SETTINGS: &[&str] = &["CONFIG"];

impl Settings {
    /// Layers the sources. `env` is the process environment (a parameter so tests can
    /// supply their own).
    pub fn load(
        file: Option<&Path>,
        env: &[(String, String)],
        flags: &FlagOverrides,
    ) -> Result<Settings, String> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(format!("config file {} does not exist", path.display()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // Variables for the test harness (CHARGEGATE_TEST_*) and the build
        // (CHARGEGATE_BUILD_*, which `cargo run` also passes to the program) are not the
        // server's.
        let vars = EnvVars(
            env.iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("CHARGEGATE_")?, v)))
                .filter(|(k, _)| {
                    !NOT_SETTINGS.contains(k) && !k.starts_with("TEST_") && !k.starts_with("BUILD_")
                })
                .map(|(k, v)| {
                    let key = k.to_ascii_lowercase();
                    let value = env_value(&key, v);
                    (key, value)
                })
                .collect(),
        );
        figment = figment.merge(Serialized::defaults(vars));
        figment = figment.merge(Serialized::defaults(flags));
        let settings: Settings = figment.extract().map_err(|e| explain(&e, file))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), String> {
        chargegate_store::DatabaseUrl::parse(&self.database_url).map_err(|e| e.to_string())?;
        if !is_listen_address(&self.listen) {
            return Err(format!(
                "listen '{}' is not an address like 127.0.0.1:8080 or localhost:8080",
                self.listen
            ));
        }
        if !self.metrics_listen.is_empty() && !is_listen_address(&self.metrics_listen) {
            return Err(format!(
                "metrics_listen '{}' is not an address like 127.0.0.1:9090 or localhost:9090",
                self.metrics_listen
            ));
        }
        if self.token_ttl < 1 {
            return Err(format!(
                "token_ttl must be at least 1 second, not {}",
                self.token_ttl
            ));
        }
        if self.login_max_failures < 1 {
            return Err("login_max_failures must be at least 1".into());
        }
        if self.login_lockout < 1 {
            return Err("login_lockout must be at least 1 second".into());
        }
        if self.db_max_connections < 1 {
            return Err("db_max_connections must be at least 1".into());
        }
        if self.db_timeout < 1 {
            return Err("db_timeout must be at least 1 second".into());
        }
        for (name, seconds) in [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
        ] {
            if seconds < 1 {
                return Err(format!("{name} must be at least 1 second"));
            }
        }
        if self.max_connections < 1 {
            return Err("max_connections must be at least 1".into());
        }
        if (self.max_header_bytes as usize) < crate::edge::MIN_HEADER_BYTES {
            return Err(format!(
                "max_header_bytes must be at least {}",
                crate::edge::MIN_HEADER_BYTES
            ));
        }
        if self.max_url_bytes < 256 {
            return Err("max_url_bytes must be at least 256".into());
        }
        if self.password_checks < 1 {
            return Err("password_checks must be at least 1".into());
        }
        for (name, seconds) in [
            ("console_session_ttl", self.console_session_ttl),
            ("console_idle_timeout", self.console_idle_timeout),
        ] {
            if seconds < 1 {
                return Err(format!("{name} must be at least 1 second"));
            }
        }
        self.trusted_proxy_addresses()?;
        if !self.outbox_webhook.is_empty() {
            crate::jobs::outbox_push::Webhook::parse(
                &self.outbox_webhook,
                self.outbox_webhook_secret.clone(),
            )?;
        }
        if let Some(ca) = self.outbox_webhook_ca() {
            crate::jobs::webhook_client::build(Some(ca))?;
        }
        tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| format!("log filter '{}' is not valid: {e}", self.log))?;
        Ok(())
    }
}

impl Settings {
    /// The addresses of `trusted_proxies`.
    pub fn trusted_proxy_addresses(&self) -> Result<Vec<std::net::IpAddr>, String> {
        self.trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse().map_err(|_| {
                    format!("trusted_proxies: '{p}' is not an IP address like 10.0.0.1 or ::1")
                })
            })
            .collect()
    }

    /// The file of `outbox_webhook_ca`, when one is set.
    pub fn outbox_webhook_ca(&self) -> Option<&Path> {
        Some(Path::new(&self.outbox_webhook_ca)).filter(|_| !self.outbox_webhook_ca.is_empty())
    }

    /// The console's settings.
    pub fn console(&self) -> ConsoleSettings {
        ConsoleSettings {
            enabled: self.console,
            secure_cookies: self.console_secure_cookies,
            sessions: chargegate_core::console::SessionPolicy {
                ttl_seconds: self.console_session_ttl,
                idle_seconds: self.console_idle_timeout,
            },
            trusted_proxies: self.trusted_proxy_addresses().unwrap_or_default(),
        }
    }

    /// The HTTP edge's limits.
    pub fn edge(&self) -> EdgeSettings {
        use std::time::Duration;
        EdgeSettings {
            header_timeout: Duration::from_secs(self.header_timeout),
            body_timeout: Duration::from_secs(self.body_timeout),
            max_connections: self.max_connections as usize,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
            max_header_bytes: self.max_header_bytes as usize,
            max_url_bytes: self.max_url_bytes as usize,
            http_errors: self.http_errors,
        }
    }
}

/// `IP:PORT` or `HOST:PORT`. A host name is resolved when the server binds (and a name
/// that does not resolve is reported then), so `localhost:8080` works as people expect.
fn is_listen_address(text: &str) -> bool {
    if text.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    port.parse::<u16>().is_ok()
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
}

/// Settings that hold whole numbers.
const INTEGER_SETTINGS: &[&str] = &[
    "token_ttl",
    "login_max_failures",
    "login_lockout",
    "db_max_connections",
    "db_timeout",
    "header_timeout",
    "body_timeout",
    "max_connections",
    "shutdown_timeout",
    "max_header_bytes",
    "max_url_bytes",
    "rate_limit",
    "rate_limit_burst",
    "password_checks",
    "console_session_ttl",
    "console_idle_timeout",
];

/// Settings that hold `true` or `false`.
const BOOL_SETTINGS: &[&str] = &["console"];

/// Environment values are text; those of whole-number settings are passed as numbers
/// when they are numbers, so `CHARGEGATE_TOKEN_TTL=3600` works while
/// `CHARGEGATE_LISTEN` stays text whatever it holds.
fn env_value(key: &str, value: &str) -> figment::value::Value {
    if BOOL_SETTINGS.contains(&key) {
        match value.trim() {
            "true" => return figment::value::Value::from(true),
            "false" => return figment::value::Value::from(false),
            _ => {}
        }
    }
    match value.trim().parse::<i64>() {
        Ok(n) if INTEGER_SETTINGS.contains(&key) => figment::value::Value::from(n),
        _ => figment::value::Value::from(value.to_owned()),
    }
}

/// `CHARGEGATE_*` variables as settings (a type of its own so errors can name the source).
#[derive(Serialize)]
#[serde(transparent)]
struct EnvVars(BTreeMap<String, figment::value::Value>);

/// What a setting must hold, in words, for messages about a value of the wrong kind.
fn expectation(key: &str) -> &'static str {
    match key {
        "token_ttl" | "login_lockout" => "a whole number of seconds",
        "db_timeout" => "a positive whole number of seconds",
        "login_max_failures" | "db_max_connections" => "a positive whole number",
        "log_format" => "\"pretty\" or \"json\"",
        "http_errors" => "\"rest\" or \"crm\"",
        "database_url" => "text: sqlite://PATH or postgres://USER@HOST/DB",
        "listen" => "text: an address such as \"127.0.0.1:8080\"",
        "metrics_listen" => "text: an address such as \"127.0.0.1:9090\", or empty",
        "log" => "text: a log filter such as \"info\"",
        "console" => "true or false",
        "console_secure_cookies" => "true, false or \"auto\"",
        "console_session_ttl" | "console_idle_timeout" => "a positive whole number of seconds",
        "trusted_proxies" => "text: IP addresses separated by commas",
        "outbox_webhook" => "text: an http:// or https:// URL, or empty",
        "outbox_webhook_secret" => "text",
        "outbox_webhook_ca" => "text: the path of a PEM file, or empty",
        _ => "a value of another kind",
    }
}

/// A value as the person wrote it, for messages; `None` for values that are not simple.
fn written(actual: &figment::error::Actual) -> Option<String> {
    use figment::error::Actual;
    match actual {
        Actual::Bool(b) => Some(b.to_string()),
        Actual::Unsigned(n) => Some(n.to_string()),
        Actual::Signed(n) => Some(n.to_string()),
        Actual::Float(n) => Some(n.to_string()),
        Actual::Char(c) => Some(format!("{:?}", c.to_string())),
        Actual::Str(s) => Some(format!("{s:?}")),
        Actual::Seq => Some("a list".into()),
        Actual::Map => Some("a table".into()),
        _ => None,
    }
}

/// A parser's multi-line report (TOML draws the line and a caret under it) as one line:
/// ``syntax error at line 1, column 13: invalid string; expected `"`, `'` ``.
fn flatten_message(message: &str) -> String {
    let gutter = |line: &str| {
        let line = line.trim_start();
        line.starts_with('|')
            || line.split_once('|').is_some_and(|(n, _)| {
                !n.trim().is_empty() && n.trim().bytes().all(|b| b.is_ascii_digit())
            })
    };
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !gutter(l))
        .collect();
    let mut text = String::new();
    for (i, line) in lines.iter().enumerate() {
        text.push_str(match i {
            0 => "",
            1 => ": ",
            _ => "; ",
        });
        match line.strip_prefix("TOML parse error at ") {
            Some(place) => {
                text.push_str("syntax error at ");
                text.push_str(place);
            }
            None => text.push_str(line),
        }
    }
    text
}

/// Each problem on one line, naming the setting and where it came from, in words rather
/// than Rust's types:
/// `token_ttl in chargegate.toml must be a whole number of seconds, not "soon"`.
fn explain(e: &figment::Error, file: Option<&Path>) -> String {
    use figment::error::Kind;
    e.clone()
        .into_iter()
        .map(|e| {
            let origin = e.metadata.as_ref().map_or("", |m| m.name.as_ref());
            let from_env = origin.ends_with("EnvVars");
            let from_flag = origin.ends_with("FlagOverrides");
            let file_name =
                file.map_or_else(|| "the config file".to_owned(), |f| f.display().to_string());
            // How the setting `key` is named where it came from.
            let name = |key: &str| {
                if from_env {
                    format!("CHARGEGATE_{}", key.to_ascii_uppercase())
                } else if from_flag {
                    format!("--{}", key.replace('_', "-"))
                } else {
                    format!("{key} in {file_name}")
                }
            };
            let key = e.path.join(".");
            match &e.kind {
                Kind::UnknownField(field, known) => {
                    if from_env {
                        let known: Vec<String> = known
                            .iter()
                            .map(|k| format!("CHARGEGATE_{}", k.to_ascii_uppercase()))
                            .collect();
                        format!(
                            "unknown environment variable CHARGEGATE_{} (settings: {})",
                            field.to_ascii_uppercase(),
                            known.join(", ")
                        )
                    } else {
                        format!(
                            "unknown setting '{field}' in {file_name} (settings: {})",
                            known.join(", ")
                        )
                    }
                }
                Kind::InvalidType(actual, _)
                | Kind::InvalidValue(actual, _)
                | Kind::Unsupported(actual) => {
                    let found = written(actual)
                        .map(|w| format!(", not {w}"))
                        .unwrap_or_default();
                    format!("{} must be {}{found}", name(&key), expectation(&key))
                }
                Kind::UnknownVariant(value, _) => {
                    format!(
                        "{} must be {}, not {value:?}",
                        name(&key),
                        expectation(&key)
                    )
                }
                Kind::Message(message) if key.is_empty() => {
                    let whence = if from_env {
                        "environment".to_owned()
                    } else {
                        format!("config file {file_name}")
                    };
                    format!("{whence}: {}", flatten_message(message))
                }
                Kind::Message(message) => format!("{}: {}", name(&key), flatten_message(message)),
                other => format!("{}: {}", name(&key), flatten_message(&other.to_string())),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A commented example of every setting with its default, for `chargegate config example`.
pub fn example() -> String {
    let d = Settings::default();
    format!(
        r#"# chargegate configuration (TOML). Pass it with --config PATH or CHARGEGATE_CONFIG.
# Every key is optional; shown here with its default. Environment variables
# CHARGEGATE_<KEY> (upper case) override this file, and command-line flags override both.

# Database: sqlite://PATH (created if missing) or postgres://USER[:PASSWORD]@HOST[:PORT]/DB.
# Flag: --database. Env: CHARGEGATE_DATABASE_URL.
database_url = "{database_url}"

# Address the API listens on. Flag: serve --listen. Env: CHARGEGATE_LISTEN.
listen = "{listen}"

# Address of a separate Prometheus listener serving GET /metrics; empty = off.
# Flag: serve --metrics-listen. Env: CHARGEGATE_METRICS_LISTEN.
metrics_listen = "{metrics_listen}"

# Token lifetime from issue, in seconds, regardless of use. Env: CHARGEGATE_TOKEN_TTL.
token_ttl = {token_ttl}

# Login lockout: after this many consecutive failures for one organisation+username,
# that pair is refused (429) for login_lockout seconds, even with the right password.
login_max_failures = {login_max_failures}
login_lockout = {login_lockout}

# Log lines: "pretty" or "json". Flag: --log-format. Env: CHARGEGATE_LOG_FORMAT.
log_format = "pretty"

# Log filter, e.g. "info", "warn", "chargegate=debug,sqlx=warn". Env: CHARGEGATE_LOG.
log = "{log}"

# Database connections per pool (PostgreSQL) or reader connections (SQLite, which has
# one writer). Env: CHARGEGATE_DB_MAX_CONNECTIONS.
db_max_connections = {db_max_connections}

# Seconds to wait for a connection, a lock, or (PostgreSQL) a statement before answering
# 503 SERVICE_UNAVAILABLE. Env: CHARGEGATE_DB_TIMEOUT.
db_timeout = {db_timeout}

# HTTP edge. Seconds a connection has to send a complete request head, counted from its
# accept or from the previous response, so it is also how long an idle kept-alive
# connection stays open. Flag: serve --header-timeout. Env: CHARGEGATE_HEADER_TIMEOUT.
header_timeout = {header_timeout}

# Seconds a request has to send its whole body after its head; past it the request
# answers 408 REQUEST_TIMEOUT and the connection closes.
# Flag: serve --body-timeout. Env: CHARGEGATE_BODY_TIMEOUT.
body_timeout = {body_timeout}

# Connections open at once. More are answered 503 SERVICE_UNAVAILABLE and closed at
# once; open ones are unaffected. On Linux serve lowers it to stay under the process's
# descriptor limit (ulimit -n), less the database's descriptors and a margin.
# Flag: serve --max-connections. Env: CHARGEGATE_MAX_CONNECTIONS.
max_connections = {max_connections}

# Seconds requests in flight may take after SIGTERM/Ctrl-C; then every remaining
# connection is closed and the server exits.
# Flag: serve --shutdown-timeout. Env: CHARGEGATE_SHUTDOWN_TIMEOUT.
shutdown_timeout = {shutdown_timeout}

# Largest request head (request line and headers) in bytes, at least 8192; larger is
# 431 HEADERS_TOO_LARGE. Env: CHARGEGATE_MAX_HEADER_BYTES.
max_header_bytes = {max_header_bytes}

# Longest request target (path and query) in bytes; longer is 414 URI_TOO_LONG.
# Env: CHARGEGATE_MAX_URL_BYTES.
max_url_bytes = {max_url_bytes}

# Requests per second each operator may make on average (0 = no limit), and how many
# it may make at once above that (0 = rate_limit). Past it: 429 TOO_MANY_REQUESTS with
# Retry-After. Flag: serve --rate-limit. Env: CHARGEGATE_RATE_LIMIT,
# CHARGEGATE_RATE_LIMIT_BURST.
rate_limit = {rate_limit}
rate_limit_burst = {rate_limit_burst}

# Password checks (Argon2id, 19 MiB of memory each) running at once; further logins
# wait. Their memory is allocated once and reused. Env: CHARGEGATE_PASSWORD_CHECKS.
password_checks = {password_checks}

# HTTP status of error answers. "rest": the status of the error's code (401 for
# INVALID_TOKEN, 404, 429, 503, ...). "crm": HTTP 200 for every answer in the envelope,
# the code staying in status.code, for clients written for CRM.COM that treat any other
# status as a transport failure (.NET HttpWebRequest, Guzzle's defaults). /healthz and
# /readyz keep their real statuses. Env: CHARGEGATE_HTTP_ERRORS.
http_errors = "rest"
# The operator console, a web page at /console/ for billing staff (see the README).
# Off: flag serve --no-console, or console = false. Env: CHARGEGATE_CONSOLE.
console = true

# When the console's cookies are marked Secure: true, false, or "auto" (when the request
# came over HTTPS, which only a proxy listed in trusted_proxies can say, with
# X-Forwarded-Proto: https). Env: CHARGEGATE_CONSOLE_SECURE_COOKIES.
console_secure_cookies = "auto"

# A console session ends this many seconds after sign-in whatever its use, or after
# console_idle_timeout seconds without a page. Env: CHARGEGATE_CONSOLE_SESSION_TTL,
# CHARGEGATE_CONSOLE_IDLE_TIMEOUT.
console_session_ttl = {console_session_ttl}
console_idle_timeout = {console_idle_timeout}

# IP addresses of reverse proxies in front of chargegate whose X-Forwarded-Proto is
# believed, separated by commas, e.g. "10.0.0.5, ::1". Env: CHARGEGATE_TRUSTED_PROXIES.
trusted_proxies = "{trusted_proxies}"

# Push the outbox (what Netflix must be told) to this URL, http://HOST[:PORT]/PATH or
# https://HOST[:PORT]/PATH, as signed batches; empty = no push (connectors read GET
# outbox). Redirects are not followed (a 3xx is a failed delivery). Logs show only its
# scheme, host and port. Needs a secret, the HMAC-SHA256 key of X-Chargegate-Signature;
# prefer the environment for it.
# Flag: serve --outbox-webhook. Env: CHARGEGATE_OUTBOX_WEBHOOK,
# CHARGEGATE_OUTBOX_WEBHOOK_SECRET.
outbox_webhook = ""
outbox_webhook_secret = ""

# For an https:// webhook whose certificate a private CA signed: a PEM file of one or
# more CA certificates, trusted besides the system's roots (read at start). Empty = the
# system's roots only. Flag: serve --outbox-webhook-ca. Env: CHARGEGATE_OUTBOX_WEBHOOK_CA.
outbox_webhook_ca = ""
"#,
        database_url = d.database_url,
        listen = d.listen,
        metrics_listen = d.metrics_listen,
        token_ttl = d.token_ttl,
        login_max_failures = d.login_max_failures,
        login_lockout = d.login_lockout,
        log = d.log,
        db_max_connections = d.db_max_connections,
        db_timeout = d.db_timeout,
        header_timeout = d.header_timeout,
        body_timeout = d.body_timeout,
        max_connections = d.max_connections,
        shutdown_timeout = d.shutdown_timeout,
        max_header_bytes = d.max_header_bytes,
        max_url_bytes = d.max_url_bytes,
        rate_limit = d.rate_limit,
        rate_limit_burst = d.rate_limit_burst,
        password_checks = d.password_checks,
        console_session_ttl = d.console_session_ttl,
        console_idle_timeout = d.console_idle_timeout,
        trusted_proxies = d.trusted_proxies,
    )
}

#[cfg(test)]
mod tests;
