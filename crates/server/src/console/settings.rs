//! The console's own settings: whether it is served, its cookies and its sessions.

use std::fmt;
use std::net::IpAddr;

use chargegate_core::console::SessionPolicy;
use serde::{Deserialize, Serialize};

/// The console's settings.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// Whether `/console/` is served at all.
    pub enabled: bool,
    pub secure_cookies: SecureCookies,
    pub sessions: SessionPolicy,
    /// Proxies whose `X-Forwarded-Proto` is believed.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            enabled: true,
            secure_cookies: SecureCookies::Auto,
            sessions: SessionPolicy::default(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// When the console's cookies are marked `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecureCookies {
    Always,
    Never,
    /// When the request came over HTTPS: through a trusted proxy that says so.
    #[default]
    Auto,
}

impl SecureCookies {
    fn as_str(self) -> &'static str {
        match self {
            SecureCookies::Always => "true",
            SecureCookies::Never => "false",
            SecureCookies::Auto => "auto",
        }
    }
}

impl Serialize for SecureCookies {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

// `true`, `false` (TOML booleans or text, as the environment gives them) or `auto`.
impl<'de> Deserialize<'de> for SecureCookies {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SecureCookies;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or \"auto\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<SecureCookies, E> {
                Ok(if v {
                    SecureCookies::Always
                } else {
                    SecureCookies::Never
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecureCookies, E> {
                match v.trim() {
                    "true" => Ok(SecureCookies::Always),
                    "false" => Ok(SecureCookies::Never),
                    "auto" => Ok(SecureCookies::Auto),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}
