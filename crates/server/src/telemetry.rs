//! Log output: `tracing` to standard error, pretty or JSON, filtered by `CHARGEGATE_LOG`.
//!
//! Standard output stays free for what commands print (import summaries, the config
//! example). Secrets never reach a log line: tokens and passwords are not recorded in any
//! span or event, and [`chargegate_core::token::Token`]'s `Debug` is redacted.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter =
        EnvFilter::try_new(filter).map_err(|e| format!("bad log filter '{filter}': {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Pretty => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|e| format!("cannot start logging: {e}"))
}
