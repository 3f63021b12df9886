//! The console in a real browser: headless Chromium, driven over WebDriver (plain HTTP and
//! JSON, spoken with reqwest), signs in, reads the overview, opens a charge and declines
//! it, and sees `DECLINED` in the charge's timeline. Every page is checked with axe-core
//! (no serious or critical accessibility violation) and saved as a PNG under
//! `target/console-screenshots/`.
//!
//! It installs nothing: it needs Debian's `chromium` and `chromium-driver` and axe-core's
//! script in `target/axe-core/` (`.ci/run` provides all three). Where they are missing it
//! says `SKIPPED: …` and how to get them, and returns — unless
//! `CHARGEGATE_TEST_REQUIRE_BROWSER=1` (as `.ci/run` sets), when a missing part fails it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chargegate_core::apikey::{ApiKey, KEY_BYTES, NewApiKey};
use chargegate_core::clock::Timestamp;
use chargegate_core::text::{OperatorCode, Username};
use common::*;
use serde_json::{Value, json};

/// The key under which WebDriver returns an element's id.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    )
}

fn found(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// Chromium and its driver, when installed.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let chromium = found("chromium").or_else(|| found("chromium-browser"));
    chromium.zip(found("chromedriver")).ok_or_else(|| {
        "chromium and chromedriver are not installed \
         (apt-get install chromium chromium-driver)"
            .into()
    })
}

/// axe-core's script, as `.ci/run` unpacks it into `target/axe-core/`.
fn axe_source() -> Result<String, String> {
    let script = target_dir().join("axe-core/package/axe.min.js");
    std::fs::read_to_string(&script).map_err(|e| {
        format!(
            "{}: {e} (npm pack axe-core@4 into target/axe-core/ and unpack it there, \
             as .ci/run does)",
            script.display()
        )
    })
}

/// Whether a missing browser or axe-core fails the test instead of skipping it.
fn required() -> bool {
    std::env::var("CHARGEGATE_TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let digits: Vec<u32> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, d)| acc | (d << (18 - 6 * i)));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    out
}

/// A chromedriver process and one browser session in it; both end on drop.
struct Driver {
    child: Child,
    http: reqwest::Client,
    base: String,
    session: String,
}

impl Driver {
    async fn start(chromium: &Path, chromedriver: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut driver = Driver {
            child,
            http,
            base,
            session: String::new(),
        };
        for _ in 0..100 {
            let status = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await;
            if status.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let created = driver
            .call(
                "POST",
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                 "--disable-dev-shm-usage", "--window-size=1280,900",
                                 "--force-device-scale-factor=1", "--lang=en-GB"]
                    }
                }}}),
            )
            .await;
        created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .clone_into(&mut driver.session);
        driver
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let response = request.send().await.expect("webdriver answers");
        let status = response.status();
        let value: Value = response.json().await.expect("webdriver JSON");
        assert!(status.is_success(), "{method} {path}: {value}");
        value["value"].clone()
    }

    async fn session_call(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn open(&self, url: &str) {
        self.session_call("POST", "/url", json!({ "url": url }))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .session_call(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found[ELEMENT].as_str().expect("element id").to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.session_call(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.session_call("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.session_call("GET", &format!("/element/{id}/text"), json!({}))
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Waits until the browser shows a page whose address `matches`, fully loaded: a click
    /// that submits a form may return before the next page arrives.
    async fn arrive(&self, what: &str, matches: impl Fn(&str) -> bool) {
        for _ in 0..300 {
            if matches(&self.url().await) {
                let ready = self
                    .session_call(
                        "POST",
                        "/execute/sync",
                        json!({"script": "return document.readyState", "args": []}),
                    )
                    .await;
                if ready == "complete" {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "never arrived at {what}; the browser shows {}",
            self.url().await
        );
    }

    /// Text the page holds but does not render (an SVG's `<title>`).
    async fn text_content(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.session_call(
            "GET",
            &format!("/element/{id}/property/textContent"),
            json!({}),
        )
        .await
        .as_str()
        .unwrap_or("")
        .to_owned()
    }

    async fn url(&self) -> String {
        self.session_call("GET", "/url", json!({}))
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.session_call("GET", "/screenshot", json!({})).await;
        let dir = target_dir().join("console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, decode_base64(png.as_str().unwrap())).unwrap();
        path
    }

    /// Runs axe-core on the page: the serious and critical violations.
    async fn accessibility_problems(&self, axe: &str) -> Vec<String> {
        let script = format!(
            "{axe}\n;const done = arguments[arguments.length - 1];\
             axe.run(document, {{resultTypes: ['violations']}})\
               .then(r => done(r.violations.map(v => ({{id: v.id, impact: v.impact, \
                    help: v.help, nodes: v.nodes.map(n => n.html).slice(0, 3)}}))))\
               .catch(e => done([{{id: 'axe-error', impact: 'critical', help: String(e)}}]));"
        );
        self.session_call("POST", "/timeouts", json!({"script": 60000}))
            .await;
        let violations = self
            .session_call(
                "POST",
                "/execute/async",
                json!({"script": script, "args": []}),
            )
            .await;
        violations
            .as_array()
            .expect("a list of violations")
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(std::string::ToString::to_string)
            .collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The browser goes with its driver.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Charges and decisions spread over the last weeks, so the pages look lived in.
async fn furnish(srv: &TestServer) {
    let customers = [
        "acme-0042",
        "cust-1187",
        "cust-2210",
        "cust-3305",
        "cust-4471",
        "cust-5523",
        "cust-6609",
        "cust-7781",
        "cust-8834",
        "cust-9902",
        "cust-1010",
        "cust-1212",
    ];
    let charges: Vec<(String, &str)> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("I{:08}", 2700 + i), *c))
        .collect();
    let refs: Vec<(&str, &str)> = charges.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    srv.add_charges(OPERATOR, &refs).await;
    let token = srv.login().await;
    // Decisions on earlier days: the clock is turned back, then forward again.
    for (i, (number, customer)) in charges.iter().take(8).enumerate() {
        let days_ago = [18, 14, 11, 9, 6, 4, 2, 1][i];
        srv.clock.advance(-days_ago * 86_400);
        let method = if i % 3 == 1 { "decline" } else { "accept" };
        let r = srv
            .batch(
                method,
                &token,
                json!([{"number": number, "billing_system_customer_identifier": customer,
                        "reference_number": format!("R-{}", 500 + i)}]),
            )
            .await;
        srv.clock.advance(days_ago * 86_400);
        r.assert_all_ok();
    }
    let r = srv
        .post(
            &format!("{V2}/netflix/subscriptions/create"),
            &json!({"token": token, "billing_system_customer_identifier": "cust-9902"}),
        )
        .await;
    assert_eq!(r.code(), "OK", "{}", r.text);
    let user = srv
        .store
        .login_user(
            &OperatorCode::parse(OPERATOR).unwrap(),
            &Username::parse(USER).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    let key = ApiKey::from_random_bytes([7; KEY_BYTES]);
    srv.store
        .create_api_key(&NewApiKey {
            operator_id: user.operator_id,
            user_id: user.user_id,
            prefix: key.prefix(),
            hash: key.hash(),
            name: Some("billing system".into()),
            created_at: Timestamp::now(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_reads_the_overview_and_declines_a_charge_in_a_real_browser() {
    let (chromium, chromedriver) = match browser() {
        Ok(found) => found,
        Err(why) if !required() => {
            println!("SKIPPED: the console's browser test: {why}");
            return;
        }
        Err(why) => panic!("the console's browser test cannot run: {why}"),
    };
    let axe = match axe_source() {
        Ok(axe) => Some(axe),
        Err(why) if !required() => {
            println!("SKIPPED: the accessibility check (axe-core): {why}");
            None
        }
        Err(why) => panic!("the accessibility check cannot run: {why}"),
    };
    let srv = TestServer::start(Backend::Sqlite).await;
    furnish(&srv).await;
    let driver = Driver::start(&chromium, &chromedriver).await;
    let mut problems = Vec::new();
    let mut check = async |driver: &Driver, page: &str| {
        let shot = driver.screenshot(page).await;
        assert!(
            std::fs::metadata(&shot).unwrap().len() > 1000,
            "{page}: a real picture"
        );
        if let Some(axe) = &axe {
            for p in driver.accessibility_problems(axe).await {
                problems.push(format!("{page}: {p}"));
            }
        }
    };

    driver.open(&srv.url("/console/")).await;
    driver
        .arrive("the sign-in page", |u| u.ends_with("/console/login"))
        .await;
    check(&driver, "1-sign-in").await;
    driver.type_into("#organisation", OPERATOR).await;
    driver.type_into("#username", USER).await;
    driver.type_into("#password", PASSWORD).await;
    driver.click("button[type=submit]").await;
    driver
        .arrive("the overview", |u| u.ends_with("/console/"))
        .await;
    assert_eq!(driver.text("h1").await, "Overview");
    assert!(driver.text_content("svg title").await.contains("8 in all"));
    check(&driver, "2-overview").await;

    driver.click("nav a[href='/console/charges']").await;
    driver
        .arrive("the charges", |u| u.ends_with("/console/charges"))
        .await;
    assert_eq!(driver.text("h1").await, "Charges");
    check(&driver, "3-charges").await;

    driver.click("a[href='/console/charges/I00002711']").await;
    driver
        .arrive("the charge", |u| u.ends_with("/console/charges/I00002711"))
        .await;
    assert_eq!(driver.text("h1").await, "Charge I00002711");
    assert!(driver.text(".fields").await.contains("PENDING"));
    check(&driver, "4-charge").await;

    driver.type_into("#reference_number", "R-console-1").await;
    driver.click("button.decline").await;
    driver
        .arrive("the declined charge", |u| u.contains("done=decline"))
        .await;
    let timeline = driver.text(".timeline").await;
    assert!(timeline.contains("DECLINED"), "{timeline}");
    assert!(timeline.contains("console:demo"), "{timeline}");
    assert!(timeline.contains("R-console-1"), "{timeline}");
    check(&driver, "5-declined").await;

    driver.open(&srv.url("/console/subscriptions")).await;
    check(&driver, "6-subscriptions").await;
    driver.click("td a").await;
    driver
        .arrive("a subscription", |u| u.contains("/console/subscriptions/S"))
        .await;
    assert!(driver.text("h1").await.starts_with("Subscription S"));
    check(&driver, "7-subscription").await;
    driver.open(&srv.url("/console/people")).await;
    assert!(driver.text("code").await.starts_with("cgk_"));
    check(&driver, "8-people").await;

    // A phone's width: the same pages reflow.
    driver
        .session_call("POST", "/window/rect", json!({"width": 400, "height": 860}))
        .await;
    driver.open(&srv.url("/console/charges/I00002711")).await;
    check(&driver, "9-phone-charge").await;

    driver.click("button.link").await;
    driver
        .arrive("the sign-in page after signing out", |u| {
            u.ends_with("/console/login")
        })
        .await;
    assert!(
        problems.is_empty(),
        "serious accessibility violations:\n{}",
        problems.join("\n")
    );
}
