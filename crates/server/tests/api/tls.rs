//! PostgreSQL over TLS (rustls): `sslmode=require` and `verify-full` connect to a server
//! with a certificate from the test's own CA, and `verify-full` refuses a server whose
//! certificate another CA signed. The server is a throwaway cluster the test starts
//! (root only, like CI; skipped with a printed reason elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use chargegate_core::Store;
use chargegate_store::{PostgresStore, StoreOptions};

struct TlsCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

fn sh(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn as_postgres(command: &str) -> Result<(), String> {
    sh("su", &["postgres", "-s", "/bin/sh", "-c", command])
}

/// A self-signed CA named `name` in `dir` (`NAME.crt`, `NAME.key`).
fn make_ca(dir: &Path, name: &str) -> Result<(), String> {
    let d = dir.display();
    sh(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{d}/{name}.key"),
            "-out",
            &format!("{d}/{name}.crt"),
            "-subj",
            &format!("/CN=chargegate test {name}"),
        ],
    )
}

impl TlsCluster {
    fn start() -> Result<TlsCluster, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no PostgreSQL binaries: {e}"))?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").is_file())
            .ok_or("no initdb under /usr/lib/postgresql")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let d = dir.path().display().to_string();
        make_ca(dir.path(), "ca")?;
        make_ca(dir.path(), "other-ca")?;
        std::fs::write(
            dir.path().join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .map_err(|e| e.to_string())?;
        sh(
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{d}/server.key"),
                "-out",
                &format!("{d}/server.csr"),
                "-subj",
                "/CN=localhost",
            ],
        )?;
        sh(
            "openssl",
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &format!("{d}/server.csr"),
                "-CA",
                &format!("{d}/ca.crt"),
                "-CAkey",
                &format!("{d}/ca.key"),
                "-CAcreateserial",
                "-extfile",
                &format!("{d}/san.ext"),
                "-out",
                &format!("{d}/server.crt"),
            ],
        )?;
        sh("chown", &["-R", "postgres", &d])?;
        sh("chmod", &["0700", &d])?;
        sh("chmod", &["0600", &format!("{d}/server.key")])?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let b = bin.display();
        as_postgres(&format!(
            "{b}/initdb -D {d}/data -A trust -U postgres >/dev/null"
        ))?;
        as_postgres(&format!(
            "{b}/pg_ctl -D {d}/data -l {d}/log -w -o \"-p {port} -k {d} -c listen_addresses=127.0.0.1 \
             -c ssl=on -c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key\" start >/dev/null"
        ))?;
        Ok(TlsCluster { dir, bin, port })
    }

    fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/postgres?{query}",
            self.port
        )
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let _ = as_postgres(&format!(
            "{}/pg_ctl -D {}/data -m immediate stop >/dev/null",
            self.bin.display(),
            self.dir.path().display()
        ));
    }
}

fn cluster_or_skip() -> Option<TlsCluster> {
    match TlsCluster::start() {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("SKIPPED: cannot start a throwaway TLS PostgreSQL cluster: {e}");
            None
        }
    }
}

async fn uses_tls(url: &str) -> bool {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let on: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    on
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_over_tls_connects_when_required_and_verifies_the_server() {
    let Some(cluster) = cluster_or_skip() else {
        return;
    };
    let options = StoreOptions::default();
    for query in [
        "sslmode=require".to_owned(),
        format!("sslmode=verify-ca&sslrootcert={}", cluster.file("ca.crt")),
        format!("sslmode=verify-full&sslrootcert={}", cluster.file("ca.crt")),
    ] {
        let url = cluster.url(&query);
        let store = PostgresStore::open(&url, &options)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        store.ping().await.unwrap();
        assert!(
            uses_tls(&url).await,
            "{query}: the connection is not encrypted"
        );
    }
    // The command line connects the same way.
    let out = common::process::run(
        common::process::chargegate(
            &cluster.url(&format!(
                "sslmode=verify-full&sslrootcert={}",
                cluster.file("ca.crt")
            )),
            &["migrate"],
        ),
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_server_certificate_from_another_ca() {
    let Some(cluster) = cluster_or_skip() else {
        return;
    };
    let url = cluster.url(&format!(
        "sslmode=verify-full&sslrootcert={}&password=not-shown",
        cluster.file("other-ca.crt")
    ));
    let options = StoreOptions {
        acquire_timeout: std::time::Duration::from_secs(3),
        ..StoreOptions::default()
    };
    let err = match PostgresStore::open(&url, &options).await {
        Ok(_) => panic!("a certificate from another CA was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(
        !err.contains("not-shown"),
        "the message shows the URL only redacted: {err}"
    );
}
