//! Helpers every command file shares: reading a password, and a store conflict as a
//! plain message.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, anyhow, bail};
use chargegate_core::StoreError;

/// The new user's password. On a terminal it is typed twice without echo; otherwise it
/// is one line of standard input, without its line ending. Never an argument, where `ps`
/// would show it.
pub(crate) fn read_password(outcome: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let cannot = "cannot read the password from the terminal";
        let password = rpassword::prompt_password("password: ").context(cannot)?;
        if password.is_empty() {
            bail!("the password must not be empty; {outcome}");
        }
        let again = rpassword::prompt_password("password again: ").context(cannot)?;
        if again != password {
            bail!("the two passwords differ; {outcome}");
        }
        return Ok(password);
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("the password (one line on standard input) must not be empty; {outcome}");
    }
    Ok(password.to_owned())
}

pub(crate) fn conflict_as_message(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Conflict(m) => anyhow!(m),
        other => other.into(),
    }
}
