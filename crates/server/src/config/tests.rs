use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    std::fs::write(f.path(), text).expect("write");
    f
}

#[test]
fn defaults_match_the_contract() {
    let s = Settings::load(None, &[], &FlagOverrides::default()).expect("defaults");
    assert_eq!(s.database_url, "sqlite://chargegate.db");
    assert_eq!(s.listen, "127.0.0.1:8080");
    assert_eq!(s.token_ttl, 7200);
    assert_eq!((s.login_max_failures, s.login_lockout), (10, 900));
    assert_eq!(s.metrics_listen, "");
}

#[test]
fn file_then_environment_then_flags_each_override_the_one_before() {
    let f = file("listen = \"127.0.0.1:1111\"\ntoken_ttl = 60\nlog = \"warn\"\n");
    let vars = env(&[
        ("CHARGEGATE_LISTEN", "127.0.0.1:2222"),
        ("CHARGEGATE_TOKEN_TTL", "120"),
    ]);
    let s = Settings::load(Some(f.path()), &vars, &FlagOverrides::default()).expect("layers");
    assert_eq!(
        (s.listen.as_str(), s.token_ttl, s.log.as_str()),
        ("127.0.0.1:2222", 120, "warn")
    );

    let flags = FlagOverrides {
        listen: Some("127.0.0.1:3333".into()),
        ..FlagOverrides::default()
    };
    let s = Settings::load(Some(f.path()), &vars, &flags).expect("layers");
    assert_eq!(s.listen, "127.0.0.1:3333");
}

#[test]
fn unknown_keys_and_variables_are_reported_by_name() {
    let f = file("listen_addr = \"127.0.0.1:1\"\n");
    let err =
        Settings::load(Some(f.path()), &[], &FlagOverrides::default()).expect_err("unknown key");
    assert!(err.contains("listen_addr"), "{err}");
    assert!(err.contains(&f.path().display().to_string()), "{err}");

    let err = Settings::load(
        None,
        &env(&[("CHARGEGATE_TOKEN_TLL", "5")]),
        &FlagOverrides::default(),
    )
    .expect_err("unknown variable");
    assert!(err.contains("CHARGEGATE_TOKEN_TLL"), "{err}");
}

#[test]
fn the_config_test_and_build_variables_are_not_settings() {
    let vars = env(&[
        ("CHARGEGATE_CONFIG", "/nowhere.toml"),
        ("CHARGEGATE_TEST_POSTGRES_URL", "postgres://x@y/z"),
        // Set by the build script, and passed to the program by `cargo run`.
        ("CHARGEGATE_BUILD_COMMIT", "1a2b3c4d5e6f"),
        ("CHARGEGATE_BUILD_DATE", "2026-11-26"),
        ("OTHER_THING", "1"),
    ]);
    assert!(Settings::load(None, &vars, &FlagOverrides::default()).is_ok());
}

#[test]
fn bad_values_are_refused_with_the_setting_named() {
    for (var, value, named) in [
        ("CHARGEGATE_TOKEN_TTL", "soon", "CHARGEGATE_TOKEN_TTL"),
        ("CHARGEGATE_TOKEN_TTL", "0", "token_ttl"),
        ("CHARGEGATE_LISTEN", "localhost", "listen"),
        ("CHARGEGATE_DATABASE_URL", "mysql://x/y", "mysql://x/y"),
        ("CHARGEGATE_LOG_FORMAT", "xml", "CHARGEGATE_LOG_FORMAT"),
    ] {
        let err = Settings::load(None, &env(&[(var, value)]), &FlagOverrides::default())
            .expect_err("refused");
        assert!(err.contains(named), "{var}={value}: {err}");
    }
    let missing = Settings::load(
        Some(Path::new("/no/such/file.toml")),
        &[],
        &FlagOverrides::default(),
    );
    assert!(
        missing
            .expect_err("missing file")
            .contains("/no/such/file.toml")
    );
}

#[test]
fn the_example_parses_back_to_the_defaults() {
    let f = file(&example());
    let s = Settings::load(Some(f.path()), &[], &FlagOverrides::default()).expect("example parses");
    assert_eq!(s, Settings::default());
}

#[test]
fn debug_output_hides_the_database_password() {
    let s = Settings {
        database_url: "postgres://app:hunter2@db/charges".into(),
        ..Settings::default()
    };
    assert!(!format!("{s:?}").contains("hunter2"));
}

/// Asserts a message is one line in words: no Rust type names, no doubled punctuation.
#[track_caller]
fn in_words(err: &str) {
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    for rust in [
        "i64",
        "u32",
        "u64",
        "signed int",
        "invalid type",
        "``",
        ": :",
    ] {
        assert!(!err.contains(rust), "{rust:?} in {err}");
    }
}

#[test]
fn values_of_the_wrong_kind_are_explained_in_words_naming_the_setting_and_its_source() {
    for (text, expected) in [
        (
            "token_ttl = \"soon\"",
            "token_ttl in {file} must be a whole number of seconds, not \"soon\"",
        ),
        (
            "login_max_failures = 1.5",
            "login_max_failures in {file} must be a positive whole number, not 1.5",
        ),
        (
            "db_max_connections = -1",
            "db_max_connections in {file} must be a positive whole number, not -1",
        ),
        (
            "listen = 8080",
            "listen in {file} must be text: an address such as \"127.0.0.1:8080\", not 8080",
        ),
        (
            "log_format = \"xml\"",
            "log_format in {file} must be \"pretty\" or \"json\", not \"xml\"",
        ),
    ] {
        let f = file(&format!("{text}\n"));
        let err =
            Settings::load(Some(f.path()), &[], &FlagOverrides::default()).expect_err("refused");
        in_words(&err);
        let expected = expected.replace("{file}", &f.path().display().to_string());
        assert_eq!(err, expected);
    }
    let err = Settings::load(
        None,
        &env(&[("CHARGEGATE_TOKEN_TTL", "soon")]),
        &FlagOverrides::default(),
    )
    .expect_err("refused");
    in_words(&err);
    assert_eq!(
        err,
        "CHARGEGATE_TOKEN_TTL must be a whole number of seconds, not \"soon\""
    );
}

#[test]
fn a_toml_syntax_error_is_one_line_with_its_place() {
    let f = file("token_ttl = \nlisten = \"127.0.0.1:1\"\n");
    let err = Settings::load(Some(f.path()), &[], &FlagOverrides::default()).expect_err("syntax");
    in_words(&err);
    assert!(
        err.starts_with(&format!(
            "config file {}: syntax error at line 1, column 13: invalid string",
            f.path().display()
        )),
        "{err}"
    );
}

#[test]
fn text_settings_stay_text_when_the_environment_holds_digits() {
    let err = Settings::load(
        None,
        &env(&[("CHARGEGATE_LISTEN", "8080")]),
        &FlagOverrides::default(),
    )
    .expect_err("not an address");
    in_words(&err);
    assert!(err.contains("listen '8080'"), "{err}");
}

#[test]
fn listen_addresses_may_name_a_host() {
    for good in [
        "localhost:8080",
        "127.0.0.1:0",
        "[::1]:8080",
        "api.example.internal:443",
    ] {
        let vars = env(&[
            ("CHARGEGATE_LISTEN", good),
            ("CHARGEGATE_METRICS_LISTEN", good),
        ]);
        let s = Settings::load(None, &vars, &FlagOverrides::default()).expect(good);
        assert_eq!(s.listen, good);
    }
    for bad in [
        "localhost",
        "localhost:http",
        ":8080",
        "local host:80",
        "127.0.0.1:99999",
    ] {
        let err = Settings::load(
            None,
            &env(&[("CHARGEGATE_LISTEN", bad)]),
            &FlagOverrides::default(),
        )
        .expect_err(bad);
        assert!(err.contains(&format!("listen '{bad}'")), "{err}");
    }
}

#[test]
fn the_console_is_on_by_default_and_its_settings_come_from_every_layer() {
    let s = Settings::load(None, &[], &FlagOverrides::default()).expect("defaults");
    assert!(s.console);
    assert_eq!(s.console_secure_cookies, SecureCookies::Auto);
    assert_eq!(
        (s.console_session_ttl, s.console_idle_timeout),
        (8 * 3600, 30 * 60)
    );
    assert!(s.console().trusted_proxies.is_empty());

    let s = Settings::load(
        None,
        &env(&[
            ("CHARGEGATE_CONSOLE", "false"),
            ("CHARGEGATE_CONSOLE_SECURE_COOKIES", "true"),
            ("CHARGEGATE_CONSOLE_IDLE_TIMEOUT", "60"),
            ("CHARGEGATE_TRUSTED_PROXIES", "10.0.0.5, ::1"),
        ]),
        &FlagOverrides::default(),
    )
    .expect("environment");
    assert!(!s.console);
    assert_eq!(s.console_secure_cookies, SecureCookies::Always);
    assert_eq!(s.console_idle_timeout, 60);
    assert_eq!(s.console().trusted_proxies.len(), 2);

    for (text, expected) in [
        ("console_secure_cookies = false\n", SecureCookies::Never),
        ("console_secure_cookies = \"auto\"\n", SecureCookies::Auto),
        ("console_secure_cookies = true\n", SecureCookies::Always),
    ] {
        let f = file(text);
        let s = Settings::load(Some(f.path()), &[], &FlagOverrides::default()).expect(text);
        assert_eq!(s.console_secure_cookies, expected, "{text}");
    }

    let off = FlagOverrides {
        console: Some(false),
        ..FlagOverrides::default()
    };
    let s = Settings::load(None, &env(&[("CHARGEGATE_CONSOLE", "true")]), &off).expect("flag");
    assert!(!s.console, "serve --no-console wins over the environment");
}

#[test]
fn bad_console_settings_are_refused_with_the_setting_named() {
    for (key, value) in [
        ("CHARGEGATE_TRUSTED_PROXIES", "proxy.example"),
        ("CHARGEGATE_CONSOLE_SECURE_COOKIES", "sometimes"),
        ("CHARGEGATE_CONSOLE_SESSION_TTL", "0"),
        ("CHARGEGATE_CONSOLE", "maybe"),
    ] {
        let err =
            Settings::load(None, &env(&[(key, value)]), &FlagOverrides::default()).expect_err(key);
        let setting = key.trim_start_matches("CHARGEGATE_").to_ascii_lowercase();
        assert!(err.contains(&setting) || err.contains(key), "{key}: {err}");
    }
}

/// Every setting as the configuration file names it, nested ones as `table.key`, taken
/// from the code rather than a list kept by hand: the keys of the serialized defaults,
/// and, for the top level and each nested table, the fields serde knows (what an unknown
/// key is told it could have been), so a field the defaults skip when empty is not
/// missed either.
fn every_setting() -> std::collections::BTreeSet<String> {
    fn walk(prefix: &str, value: &serde_json::Value, names: &mut Vec<(String, bool)>) {
        if let serde_json::Value::Object(map) = value {
            for (key, v) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                names.push((name.clone(), v.is_object()));
                walk(&name, v, names);
            }
        }
    }
    let defaults = serde_json::to_value(Settings::default()).expect("the defaults serialize");
    let mut found = Vec::new();
    walk("", &defaults, &mut found);
    let tables: Vec<String> = std::iter::once(String::new())
        .chain(found.iter().filter(|(_, t)| *t).map(|(n, _)| n.clone()))
        .collect();
    let mut names: std::collections::BTreeSet<String> = found
        .into_iter()
        .filter(|(_, table)| !table)
        .map(|(n, _)| n)
        .collect();
    for table in tables {
        let probe = if table.is_empty() {
            "not_a_setting".to_owned()
        } else {
            format!("{table}.not_a_setting")
        };
        let err = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Serialized::default(&probe, 1))
            .extract::<Settings>()
            .expect_err("an unknown key is refused");
        for e in err {
            if let figment::error::Kind::UnknownField(_, known) = e.kind {
                names.extend(known.iter().map(|k| {
                    if table.is_empty() {
                        (*k).to_owned()
                    } else {
                        format!("{table}.{k}")
                    }
                }));
            }
        }
    }
    // A nested table is documented by its keys, not as a row of its own.
    let tables: Vec<String> = names
        .iter()
        .filter(|n| names.iter().any(|m| m.starts_with(&format!("{n}."))))
        .cloned()
        .collect();
    for table in tables {
        names.remove(&table);
    }
    names
}

/// The settings that have no row of their own (`| `name` |`) in a configuration page.
fn settings_without_a_row(page: &str) -> Vec<String> {
    every_setting()
        .into_iter()
        .filter(|name| {
            !page
                .lines()
                .any(|line| line.trim_start().starts_with(&format!("| `{name}` |")))
        })
        .collect()
}

const CONFIGURATION_PAGE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/operate/configuration.md"
);

#[test]
fn every_setting_has_its_row_in_the_configuration_page() {
    let page = std::fs::read_to_string(CONFIGURATION_PAGE).expect("docs/operate/configuration.md");
    let names = every_setting();
    assert!(
        names.len() >= 27 && names.contains("outbox_webhook_secret"),
        "the settings were not all found: {names:?}"
    );
    let missing = settings_without_a_row(&page);
    assert!(
        missing.is_empty(),
        "docs/operate/configuration.md has no row `| `NAME` | …` for {missing:?}"
    );
}

#[test]
fn a_setting_whose_row_is_gone_from_the_configuration_page_is_reported() {
    let page = std::fs::read_to_string(CONFIGURATION_PAGE).expect("docs/operate/configuration.md");
    let without: String = page
        .lines()
        .filter(|line| !line.starts_with("| `console_idle_timeout` |"))
        .flat_map(|line| [line, "\n"])
        .collect();
    assert_ne!(without, page, "the page had the row to remove");
    assert_eq!(settings_without_a_row(&without), ["console_idle_timeout"]);
}

/// A CA certificate (self-signed, valid until 2126) for the settings' checks; the
/// webhook tests make their own CAs and serve HTTPS with them.
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBoDCCAUWgAwIBAgIUI3L1iYSVXT61NHrO1UEnn1NA3MgwCgYIKoZIzj0EAwIw
JDEiMCAGA1UEAwwZY2hhcmdlZ2F0ZSBjb25maWcgdGVzdCBDQTAgFw0yNjEyMDgw
MDA0MThaGA8yMTI2MTExNDAwMDQxOFowJDEiMCAGA1UEAwwZY2hhcmdlZ2F0ZSBj
b25maWcgdGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABJ+guhmV6qeM
RPHkCfXow43QAZcnNW+HsymqRR8rCcKJplgJ1Y3vn3lSVGXSWNFLIPwNpwXLCOMN
YlBaw1VjxkSjUzBRMB0GA1UdDgQWBBThVwr83MKX0iueksa3100Ows6jgDAfBgNV
HSMEGDAWgBThVwr83MKX0iueksa3100Ows6jgDAPBgNVHRMBAf8EBTADAQH/MAoG
CCqGSM49BAMCA0kAMEYCIQD3eihPGvxWluCoYGqOu1qaIj1DoLzRqZHdXhoHE1Sl
XAIhAI6zd8GnOig7PqBsssSdy7fs+8xU+QUg1viKtJry7F7H
-----END CERTIFICATE-----
";

#[test]
fn the_webhook_ca_file_comes_from_every_layer_and_holds_one_or_more_certificates() {
    let s = Settings::load(None, &[], &FlagOverrides::default()).expect("defaults");
    assert_eq!(s.outbox_webhook_ca, "");
    assert_eq!(s.outbox_webhook_ca(), None);

    let dir = tempfile::tempdir().expect("temp dir");
    let one = dir.path().join("one.pem");
    std::fs::write(&one, CA_PEM).expect("write");
    let two = dir.path().join("two.pem");
    std::fs::write(&two, format!("{CA_PEM}{CA_PEM}")).expect("write");
    let one_text = one.display().to_string();
    let two_text = two.display().to_string();

    let f = file(&format!("outbox_webhook_ca = {one_text:?}\n"));
    let s = Settings::load(Some(f.path()), &[], &FlagOverrides::default()).expect("file");
    assert_eq!(s.outbox_webhook_ca(), Some(one.as_path()));

    let vars = env(&[("CHARGEGATE_OUTBOX_WEBHOOK_CA", &two_text)]);
    let s = Settings::load(Some(f.path()), &vars, &FlagOverrides::default()).expect("env");
    assert_eq!(s.outbox_webhook_ca(), Some(two.as_path()));

    let flags = FlagOverrides {
        outbox_webhook_ca: Some(one_text),
        ..FlagOverrides::default()
    };
    let s = Settings::load(Some(f.path()), &vars, &flags).expect("flag");
    assert_eq!(s.outbox_webhook_ca(), Some(one.as_path()));
}

#[test]
fn an_unreadable_or_invalid_webhook_ca_file_is_refused_in_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a certificate\n").expect("write");
    let cut = dir.path().join("cut.pem");
    std::fs::write(&cut, &CA_PEM[..CA_PEM.len() / 2]).expect("write");
    let missing = dir.path().join("missing.pem");
    for path in [&text, &cut, &missing] {
        let path = path.display().to_string();
        let err = Settings::load(
            None,
            &env(&[("CHARGEGATE_OUTBOX_WEBHOOK_CA", &path)]),
            &FlagOverrides::default(),
        )
        .expect_err(&path);
        assert!(
            err.starts_with(&format!("outbox_webhook_ca {path}: ")),
            "{err}"
        );
        in_words(&err);
    }
}

#[test]
fn debug_output_and_errors_hide_the_webhook_url_but_its_host() {
    let s = Settings {
        outbox_webhook: "https://ops:hunter2@hooks.example.com/t/hunter2?k=hunter2".into(),
        outbox_webhook_secret: "hunter2".into(),
        ..Settings::default()
    };
    let shown = format!("{s:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("https://hooks.example.com"), "{shown}");

    let err = Settings::load(
        None,
        &env(&[(
            "CHARGEGATE_OUTBOX_WEBHOOK",
            "ftp://ops:hunter2@hooks.example.com/",
        )]),
        &FlagOverrides::default(),
    )
    .expect_err("not http");
    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("https://"), "{err}");
}
