//! The operator console over HTTP, as a browser without JavaScript uses it: sign-in and
//! its lockout, sessions that expire and end, CSRF refusals, the operator's walls,
//! escaping, and decisions that reach the API's history as `console:<user>`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use chargegate::console::ConsoleSettings;
use chargegate::console::SecureCookies;
use chargegate::state::AuthSettings;
use chargegate_core::apikey::{ApiKey, KEY_BYTES, NewApiKey};
use chargegate_core::console::SessionPolicy;
use chargegate_core::store::LoginPolicy;
use chargegate_core::text::{OperatorCode, Username};
use common::*;
use serde_json::json;

const V1: &str = "/chargegate/v1";

/// A page as the test's "browser" received it.
struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Page {
    fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// The value of the first form's CSRF field.
    fn csrf(&self) -> String {
        let at = self
            .text
            .find(r#"name="csrf" value=""#)
            .expect("a csrf field");
        let rest = &self.text[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }

    /// To the sign-in page (saying the session ended, when it did).
    #[track_caller]
    fn assert_sign_in_redirect(&self) {
        assert_eq!(self.status, 303, "{}", self.text);
        assert!(
            self.location()
                .is_some_and(|l| l == "/console/login" || l == "/console/login?ended=1"),
            "{:?}",
            self.location()
        );
    }
}

/// A cookie-keeping client that does not follow redirects, like a careful browser.
struct Browser<'a> {
    srv: &'a TestServer,
    client: reqwest::Client,
    cookies: BTreeMap<String, String>,
    /// Headers every request carries (e.g. a proxy's `X-Forwarded-Proto`).
    extra: Vec<(&'static str, &'static str)>,
}

fn form_body(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl<'a> Browser<'a> {
    fn new(srv: &'a TestServer) -> Self {
        Browser {
            srv,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
            extra: Vec::new(),
        }
    }

    async fn send(&mut self, mut req: reqwest::RequestBuilder) -> Page {
        if !self.cookies.is_empty() {
            let jar = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req = req.header("cookie", jar);
        }
        for (k, v) in &self.extra {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request sent");
        let page = Page {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().await.expect("body"),
        };
        for set in page.set_cookies() {
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        page
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.client.get(self.srv.url(path));
        self.send(req).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let req = self
            .client
            .post(self.srv.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(fields));
        self.send(req).await
    }

    /// Opens the sign-in page and submits it.
    async fn try_sign_in(&mut self, organisation: &str, user: &str, password: &str) -> Page {
        let form = self.get("/console/login").await;
        assert_eq!(form.status, 200, "{}", form.text);
        let csrf = form.csrf();
        self.post(
            "/console/login",
            &[
                ("organisation", organisation),
                ("username", user),
                ("password", password),
                ("csrf", &csrf),
            ],
        )
        .await
    }

    async fn sign_in(&mut self) -> Page {
        let r = self.try_sign_in(OPERATOR, USER, PASSWORD).await;
        assert_eq!(
            (r.status, r.location()),
            (303, Some("/console/")),
            "{}",
            r.text
        );
        self.get("/console/").await
    }
}

async fn start_with_console(backend: Backend, console: ConsoleSettings) -> TestServer {
    TestServer::start_with_state(backend, |state| state.console = Arc::new(console)).await
}

/// Adds a web API key for a user; answers its prefix.
async fn add_key(srv: &TestServer, operator: &str, user: &str, seed: u8) -> String {
    let found = srv
        .store
        .login_user(
            &OperatorCode::parse(operator).unwrap(),
            &Username::parse(user).unwrap(),
        )
        .await
        .unwrap()
        .expect("user");
    let key = ApiKey::from_random_bytes([seed; KEY_BYTES]);
    srv.store
        .create_api_key(&NewApiKey {
            operator_id: found.operator_id,
            user_id: found.user_id,
            prefix: key.prefix(),
            hash: key.hash(),
            name: Some("billing".into()),
            created_at: chargegate_core::Timestamp::now(),
        })
        .await
        .unwrap();
    key.prefix()
}

async fn sessions(srv: &TestServer) -> i64 {
    srv.db.scalar("SELECT count(*) FROM console_sessions").await
}

async fn status_of(srv: &TestServer, token: &str, number: &str) -> String {
    let r = srv
        .get(&format!("{V1}/charges/show?token={token}&number={number}"))
        .await;
    assert_eq!(r.code(), "OK", "{}", r.text);
    r.body["data"]["charge"]["charge_status"]
        .as_str()
        .unwrap()
        .to_owned()
}

on_every_backend! {
    async fn signing_in_opens_the_overview_with_a_strict_session_cookie(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1"), ("I2", "c2")]).await;
        let mut b = Browser::new(&srv);
        b.get("/console/").await.assert_sign_in_redirect();
        let r = b.try_sign_in(OPERATOR, USER, PASSWORD).await;
        assert_eq!((r.status, r.location()), (303, Some("/console/")), "{}", r.text);
        let session = r.set_cookies().into_iter().find(|c| c.starts_with("cg_session=")).expect("a session cookie");
        assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"), "{session}");
        assert!(!session.contains("Secure"), "plain HTTP without a trusted proxy: {session}");
        assert_eq!(sessions(&srv).await, 1);

        let overview = b.get("/console/").await;
        assert_eq!(overview.status, 200, "{}", overview.text);
        assert!(overview.text.contains("Overview"));
        assert!(overview.text.contains("pci operator"));
        assert!(overview.text.contains("<svg"), "the chart is drawn on the server");
        let csp = overview.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe"), "{csp}");
        assert!(!overview.text.contains("<script"), "pages need no script");
        assert!(!overview.text.contains("style=\""), "no inline style under the CSP");

        let css = b.get("/console/assets/console.css").await;
        assert_eq!(css.status, 200);
        assert!(css.headers["content-type"].to_str().unwrap().starts_with("text/css"));

        // The API's login counts the console's sign-in as the last login too.
        let users = b.get("/console/people").await;
        assert_eq!(users.status, 200);
        assert!(users.text.contains(USER));
    }

    async fn wrong_credentials_are_refused_alike_and_the_lockout_applies_as_in_the_api(backend) {
        let auth = AuthSettings { login: LoginPolicy { max_failures: 3, lockout_seconds: 600 }, ..AuthSettings::default() };
        let db = Arc::new(TestDb::new(backend).await);
        let srv = TestServer::start_on(db, auth).await;
        srv.add_operator(OPERATOR, "EUR", USER, PASSWORD).await;
        srv.add_operator(RIVAL, "EUR", RIVAL_USER, RIVAL_PASSWORD).await;
        let mut b = Browser::new(&srv);
        let refusals = [
            b.try_sign_in(OPERATOR, "nobody", PASSWORD).await,
            b.try_sign_in(RIVAL, USER, PASSWORD).await,
            b.try_sign_in("nowhere", USER, PASSWORD).await,
        ];
        for r in &refusals {
            assert_eq!(r.status, 401, "{}", r.text);
            assert!(r.text.contains("The username, password or organisation is not correct."));
            assert!(r.set_cookies().iter().all(|c| !c.starts_with("cg_session=")));
        }
        for _ in 0..3 {
            let r = b.try_sign_in(OPERATOR, USER, "wrong").await;
            assert_eq!(r.status, 401, "{}", r.text);
            assert!(!r.text.contains("wrong"), "the password is never shown back");
        }
        let locked = b.try_sign_in(OPERATOR, USER, PASSWORD).await;
        assert_eq!(locked.status, 429, "{}", locked.text);
        assert!(locked.headers.contains_key("retry-after"));
        // The API sees the same lockout.
        srv.try_login(OPERATOR, USER, PASSWORD).await.assert_error(429, "TOO_MANY_REQUESTS");
        assert_eq!(sessions(&srv).await, 0, "nothing changed");
        b.get("/console/").await.assert_sign_in_redirect();
    }

    async fn a_session_ends_when_idle_too_long_and_at_its_absolute_lifetime(backend) {
        let console = ConsoleSettings { sessions: SessionPolicy { ttl_seconds: 1000, idle_seconds: 300 }, ..ConsoleSettings::default() };
        let srv = start_with_console(backend, console).await;
        let mut b = Browser::new(&srv);
        b.sign_in().await;
        srv.clock.advance(250);
        assert_eq!(b.get("/console/charges").await.status, 200, "used within the idle timeout");
        srv.clock.advance(250);
        assert_eq!(b.get("/console/charges").await.status, 200, "the idle timeout counts from the last page");
        srv.clock.advance(301);
        let ended = b.get("/console/charges").await;
        assert_eq!((ended.status, ended.location()), (303, Some("/console/login?ended=1")));
        assert!(!b.cookies.contains_key("cg_session"), "the stale cookie is cleared");
        assert!(b.get("/console/login?ended=1").await.text.contains("Your session has ended."));
        assert_eq!(sessions(&srv).await, 0, "an expired session is forgotten");

        b.sign_in().await;
        for _ in 0..3 {
            srv.clock.advance(290);
            assert_eq!(b.get("/console/").await.status, 200);
        }
        srv.clock.advance(200);
        // 1070 seconds after sign-in, used 200 seconds ago: past the absolute lifetime.
        b.get("/console/").await.assert_sign_in_redirect();
    }

    async fn signing_out_ends_the_session_on_the_server(backend) {
        let srv = TestServer::start(backend).await;
        let mut b = Browser::new(&srv);
        let overview = b.sign_in().await;
        let stolen = b.cookies.clone();
        let r = b.post("/console/logout", &[("csrf", &overview.csrf())]).await;
        assert_eq!((r.status, r.location()), (303, Some("/console/login")));
        assert!(!b.cookies.contains_key("cg_session"), "the cookie is cleared");
        assert_eq!(sessions(&srv).await, 0);
        // A copy of the old cookie is worth nothing now.
        let mut thief = Browser::new(&srv);
        thief.cookies = stolen;
        thief.get("/console/").await.assert_sign_in_redirect();
    }

    async fn forms_without_the_right_csrf_token_are_refused_and_change_nothing(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1")]).await;
        let token = srv.login().await;
        let mut b = Browser::new(&srv);
        let overview = b.sign_in().await;
        for csrf in ["", "0000", &"a".repeat(64)] {
            let r = b.post("/console/charges/I1/decide", &[("csrf", csrf), ("decision", "decline")]).await;
            assert_eq!(r.status, 403, "{}", r.text);
            let r = b.post("/console/logout", &[("csrf", csrf)]).await;
            assert_eq!(r.status, 403, "{}", r.text);
        }
        assert_eq!(status_of(&srv, &token, "I1").await, "PENDING");
        assert_eq!(srv.db.scalar("SELECT count(*) FROM decisions").await, 0);
        assert_eq!(b.get("/console/").await.status, 200, "still signed in");
        assert!(overview.csrf().len() >= 32);

        // Without a session, a decision only leads to the sign-in page.
        let mut stranger = Browser::new(&srv);
        stranger.post("/console/charges/I1/decide", &[("csrf", &overview.csrf()), ("decision", "decline")]).await.assert_sign_in_redirect();
        assert_eq!(status_of(&srv, &token, "I1").await, "PENDING");

        // Sign-in, too, needs the token its own form set.
        let mut fresh = Browser::new(&srv);
        let r = fresh.post("/console/login", &[("organisation", OPERATOR), ("username", USER), ("password", PASSWORD), ("csrf", "forged")]).await;
        assert_eq!(r.status, 403, "{}", r.text);
        assert_eq!(sessions(&srv).await, 1, "no session was made");
    }

    async fn another_operators_charge_answers_like_a_missing_one(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(RIVAL, &[("I9", "rc")]).await;
        let mut b = Browser::new(&srv);
        let overview = b.sign_in().await;
        let theirs = b.get("/console/charges/I9").await;
        let missing = b.get("/console/charges/I8").await;
        assert_eq!((theirs.status, missing.status), (404, 404));
        assert_eq!(theirs.text.replace("I9", "I8"), missing.text);
        let r = b.post("/console/charges/I9/decide", &[("csrf", &overview.csrf()), ("decision", "decline")]).await;
        assert_eq!(r.status, 404, "{}", r.text);
        let list = b.get("/console/charges?number=I9").await;
        assert!(list.text.contains("No charge matches."));
        let rival = srv.login_as(RIVAL, RIVAL_USER, RIVAL_PASSWORD).await;
        assert_eq!(status_of(&srv, &rival, "I9").await, "PENDING", "nothing changed");
    }

    async fn text_a_customer_or_netflix_supplied_is_escaped_everywhere(backend) {
        let srv = TestServer::start(backend).await;
        let evil = "<script>alert(1)</script>";
        srv.add_charges(OPERATOR, &[("I1", evil)]).await;
        let mut b = Browser::new(&srv);
        let overview = b.sign_in().await;
        let r = b.post("/console/charges/I1/decide", &[("csrf", &overview.csrf()), ("decision", "accept"), ("reference_number", "<b>R</b>")]).await;
        assert_eq!(r.status, 303, "{}", r.text);
        for path in ["/console/charges", "/console/charges/I1", "/console/charges?customer=%3Cscript%3Ealert(1)%3C%2Fscript%3E"] {
            let page = b.get(path).await;
            assert_eq!(page.status, 200, "{path}");
            assert!(page.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{path}: {}", page.text);
            assert!(!page.text.contains("<script"), "{path}");
            assert!(!page.text.contains("<b>R</b>"), "{path}");
        }
        let searched = b.get("/console/subscriptions?q=%3Cscript%3E").await;
        assert!(searched.text.contains("value=\"&lt;script&gt;\""), "{}", searched.text);
    }

    async fn a_decision_made_in_the_console_shows_in_the_api_history_as_the_console_user(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1"), ("I2", "c2")]).await;
        let token = srv.login().await;
        let mut b = Browser::new(&srv);
        let overview = b.sign_in().await;
        assert!(overview.text.contains(r#"Events waiting for Netflix</span><span class="figure">0</span><span class="caption">all delivered"#), "{}", overview.text);
        let csrf = overview.csrf();
        let r = b.post("/console/charges/I1/decide", &[("csrf", &csrf), ("decision", "decline"), ("reference_number", "R-1")]).await;
        assert_eq!((r.status, r.location()), (303, Some("/console/charges/I1?done=decline")), "{}", r.text);
        let page = b.get(r.location().unwrap()).await;
        assert!(page.text.contains("Declined: the charge is now DECLINED."));
        assert!(page.text.contains("console:demo"));
        assert!(!page.text.contains("name=\"decision\""), "a decided charge has no buttons");

        let shown = srv.get(&format!("{V1}/charges/show?token={token}&number=I1")).await;
        assert_eq!(shown.body["data"]["charge"]["charge_status"], "DECLINED");
        assert_eq!(shown.body["data"]["charge"]["reference_number"], "R-1");
        let last = shown.body["data"]["history_set"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["event"], "declined");
        assert_eq!(last["actor"], "console:demo");
        assert_eq!(last["reference_number"], "R-1");
        assert!(last["request_id"].as_str().is_some_and(|id| !id.is_empty()));

        let r = b.post("/console/charges/I2/decide", &[("csrf", &csrf), ("decision", "accept")]).await;
        assert_eq!(r.status, 303, "{}", r.text);
        // The feed may hold entries back while another transaction on the database (another
        // test's) is in flight: page on until both are served.
        let mut actors = Vec::new();
        let mut after = String::new();
        for _ in 0..200 {
            let feed = srv.get(&format!("{V1}/charges/decisions?token={token}&from=2000-01-01T00:00:00&to=2100-01-01T00:00:00{after}")).await;
            assert_eq!(feed.code(), "OK", "{}", feed.text);
            actors.extend(feed.body["data"]["decisions_set"].as_array().unwrap().iter().map(|d| (d["number"].clone(), d["actor"].clone())));
            if let Some(next) = feed.body["data"]["next"].as_str() {
                after = format!("&after={next}");
            }
            if actors.len() >= 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(actors, vec![(json!("I1"), json!("console:demo")), (json!("I2"), json!("console:demo"))]);

        // A second decision is refused with the engine's reason, and changes nothing.
        let again = b.post("/console/charges/I1/decide", &[("csrf", &csrf), ("decision", "accept")]).await;
        assert_eq!(again.status, 409, "{}", again.text);
        assert!(again.text.contains("Nothing was changed"));
        assert_eq!(status_of(&srv, &token, "I1").await, "DECLINED");
        // The same reference on another charge is the engine's duplicate.
        srv.add_charges(OPERATOR, &[("I3", "c3")]).await;
        let dup = b.post("/console/charges/I3/decide", &[("csrf", &csrf), ("decision", "decline"), ("reference_number", "R-1")]).await;
        assert_eq!(dup.status, 409, "{}", dup.text);
        assert_eq!(status_of(&srv, &token, "I3").await, "PENDING");

        let overview = b.get("/console/").await;
        assert!(overview.text.contains("1 approved, 1 declined"), "today's bar counts both");
        // Each decision made one event for Netflix; the refused ones made none.
        assert!(overview.text.contains(r#"Events waiting for Netflix</span><span class="figure">2</span><span class="caption">oldest "#), "{}", overview.text);
    }

    async fn disabling_the_user_ends_their_console_sessions_at_once(backend) {
        let srv = TestServer::start(backend).await;
        let mut b = Browser::new(&srv);
        b.sign_in().await;
        let op = srv.operator_id(OPERATOR).await;
        srv.store.set_user_enabled(op, &Username::parse(USER).unwrap(), false, chargegate_core::Timestamp::now()).await.unwrap();
        b.get("/console/").await.assert_sign_in_redirect();
        assert_eq!(sessions(&srv).await, 0);
        srv.store.set_user_enabled(op, &Username::parse(USER).unwrap(), true, chargegate_core::Timestamp::now()).await.unwrap();
        b.get("/console/").await.assert_sign_in_redirect();
    }

    async fn with_the_console_off_its_paths_answer_not_found_like_any_unknown_path(backend) {
        let srv = start_with_console(backend, ConsoleSettings { enabled: false, ..ConsoleSettings::default() }).await;
        for path in ["/console/", "/console/login", "/console/assets/console.css", "/console"] {
            let r = srv.get(path).await;
            r.assert_error(404, "NOT_FOUND");
            assert_eq!(r.body, srv.get("/no/such/path").await.body);
        }
        srv.post_raw("/console/login", "username=demo").await.assert_error(404, "NOT_FOUND");
    }

    async fn cookies_are_secure_when_configured_or_when_a_trusted_proxy_says_https(backend) {
        async fn session_cookie(srv: &TestServer, extra: Vec<(&'static str, &'static str)>) -> String {
            let mut b = Browser::new(srv);
            b.extra = extra;
            let r = b.try_sign_in(OPERATOR, USER, PASSWORD).await;
            r.set_cookies().into_iter().find(|c| c.starts_with("cg_session=")).expect("session cookie").to_owned()
        }
        let https = vec![("x-forwarded-proto", "https")];
        let always = start_with_console(backend, ConsoleSettings { secure_cookies: SecureCookies::Always, ..ConsoleSettings::default() }).await;
        assert!(session_cookie(&always, vec![]).await.contains("; Secure"));
        let never = start_with_console(backend, ConsoleSettings { secure_cookies: SecureCookies::Never, trusted_proxies: vec!["127.0.0.1".parse().unwrap()], ..ConsoleSettings::default() }).await;
        assert!(!session_cookie(&never, https.clone()).await.contains("Secure"));
        let untrusted = TestServer::start(backend).await;
        assert!(!session_cookie(&untrusted, https.clone()).await.contains("Secure"), "anyone can send the header");
        let proxied = start_with_console(backend, ConsoleSettings { trusted_proxies: vec!["127.0.0.1".parse().unwrap()], ..ConsoleSettings::default() }).await;
        assert!(session_cookie(&proxied, https).await.contains("; Secure"));
        assert!(!session_cookie(&proxied, vec![("x-forwarded-proto", "http")]).await.contains("Secure"));
    }

    async fn the_charge_table_filters_by_status_customer_and_number_and_pages(backend) {
        let srv = TestServer::start(backend).await;
        let many: Vec<(String, String)> = (1..=30).map(|i| (format!("I{i:03}"), format!("c{}", i % 3))).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
        srv.add_charges(OPERATOR, &refs).await;
        let token = srv.login().await;
        srv.batch("decline", &token, json!([{"number": "I001", "billing_system_customer_identifier": "c1"}])).await.assert_all_ok();
        let mut b = Browser::new(&srv);
        b.sign_in().await;
        let first = b.get("/console/charges").await;
        assert!(first.text.contains("I030") && !first.text.contains("I005"), "newest first, 25 a page");
        assert!(first.text.contains("rel=\"next\""));
        let second = b.get("/console/charges?page=2").await;
        assert!(second.text.contains("I005") && second.text.contains("I001") && !second.text.contains("I030"));
        assert!(!second.text.contains("rel=\"next\""));
        let processed = b.get("/console/charges?status=processed").await;
        assert!(processed.text.contains("I001") && !processed.text.contains("I002"));
        let pending = b.get("/console/charges?status=pending&customer=c1").await;
        assert!(pending.text.contains("I004") && !pending.text.contains("I001") && !pending.text.contains("I002"));
        let one = b.get("/console/charges?number=I007").await;
        assert!(one.text.contains("I007") && !one.text.contains("I008"));
        assert!(one.text.contains("9.99 EUR"), "money with the currency's digits");
    }

    async fn subscriptions_are_found_by_customer_or_pai_and_show_their_history(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let created = srv.post(&format!("{V2}/netflix/subscriptions/create"), &json!({"token": token, "billing_system_customer_identifier": "c1"})).await;
        assert_eq!(created.code(), "OK", "{}", created.text);
        let number = created.body["data"]["subscription_number"].as_str().unwrap().to_owned();
        srv.post(&format!("{V2}/netflix/subscriptions/suspend"), &json!({"token": token, "billing_system_customer_identifier": "c1"})).await;
        let mut b = Browser::new(&srv);
        b.sign_in().await;
        let found = b.get("/console/subscriptions?q=c1").await;
        assert!(found.text.contains(&number), "{}", found.text);
        assert!(b.get("/console/subscriptions?q=c2").await.text.contains("No subscription matches."));
        let page = b.get(&format!("/console/subscriptions/{number}")).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(page.text.contains("NOT_EFFECTIVE"));
        assert!(page.text.contains("suspended") && page.text.contains("created"));
        // Another operator's subscription is not there.
        let rival = srv.login_as(RIVAL, RIVAL_USER, RIVAL_PASSWORD).await;
        let theirs = srv.post(&format!("{V2}/netflix/subscriptions/create"), &json!({"token": rival, "billing_system_customer_identifier": "c1"})).await;
        let theirs = theirs.body["data"]["subscription_number"].as_str().unwrap().to_owned();
        assert_eq!(b.get(&format!("/console/subscriptions/{theirs}")).await.status, 404);
        assert!(!b.get("/console/subscriptions?q=c1").await.text.contains(&theirs));
    }

    async fn declining_in_the_console_cancels_the_subscription_as_the_api_does(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let created = srv.post(&format!("{V2}/netflix/subscriptions/create"), &json!({"token": token, "billing_system_customer_identifier": "c1"})).await;
        let number = created.body["data"]["subscription_number"].as_str().unwrap().to_owned();
        srv.add_charges(OPERATOR, &[("I1", "c1")]).await;
        let mut b = Browser::new(&srv);
        let overview = b.sign_in().await;
        let charge = b.get("/console/charges/I1").await;
        assert!(charge.text.contains(&format!("/console/subscriptions/{number}")), "the charge links its subscription");
        let r = b.post("/console/charges/I1/decide", &[("csrf", &overview.csrf()), ("decision", "decline")]).await;
        assert_eq!(r.status, 303, "{}", r.text);
        let page = b.get(&format!("/console/subscriptions/{number}")).await;
        assert!(page.text.contains("CANCELLED"), "{}", page.text);
        assert!(page.text.contains("/console/charges/I1"), "the history names the declined charge");
        assert!(page.text.contains(&format!("console:{USER}")), "the person who declined in the console: {}", page.text);
        assert!(page.text.contains(&format!("user:{USER}")), "the API call that created it: {}", page.text);
        let shown = srv.get(&format!("{V2}/netflix/subscriptions/show?token={token}&billing_system_customer_identifier=c1")).await;
        assert_eq!(shown.body["data"][0]["life_cycle_state"], "CANCELLED", "{}", shown.text);
    }

    async fn the_users_page_lists_only_the_operators_people_and_key_prefixes(backend) {
        let srv = TestServer::start(backend).await;
        let mut b = Browser::new(&srv);
        b.sign_in().await;
        assert!(b.get("/console/people").await.text.contains("No key."));
        let ours = add_key(&srv, OPERATOR, USER, 3).await;
        let theirs = add_key(&srv, RIVAL, RIVAL_USER, 4).await;
        let people = b.get("/console/people").await;
        assert_eq!(people.status, 200);
        assert!(people.text.contains(">demo<"));
        assert!(!people.text.contains(RIVAL_USER));
        assert!(people.text.contains(&ours), "{}", people.text);
        assert!(!people.text.contains(&theirs));
        assert!(!people.text.contains("No key."));
    }
}
