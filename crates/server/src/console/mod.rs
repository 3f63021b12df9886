//! The operator console: server-rendered pages at `/console/` for the people at an
//! operator (billing, finance, support), served by the same binary as the API.
//!
//! - Sessions live in the database (`console_sessions`), so several servers share them
//!   and disabling a user ends them at once; the cookie holds a random secret of which
//!   the database keeps only a hash.
//! - Every form that changes something carries a CSRF token derived from the session's
//!   secret (so nothing more is stored); the sign-in form, which has no session yet, uses
//!   a double-submit cookie.
//! - Pages need no script; the style sheet is compiled into the binary, and a strict
//!   Content-Security-Policy allows nothing else.
//! - Decisions go through the same batch engine as the API, marked as made in the
//!   console so the history names the actor `console:<username>`.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router, middleware};
use chargegate_core::StoreError;
use chargegate_core::batch::{Batch, ItemInput, ItemRequest, Method, Verdict};
use chargegate_core::console::{ChargeSearch, NewSession};
use chargegate_core::subscription::{LOOK_BACK_MONTHS, ShowOutcome, ShowQuery, months_before};
use chargegate_core::text::{ChargeNumber, CustomerId, ReferenceNumber};
use chargegate_core::token::{TOKEN_BYTES, Token};
use serde::Deserialize;

use crate::auth::check_credentials;
use crate::edge::context::RequestId;
use crate::edge::error::{ApiError, Code};
use crate::state::AppState;
use forms::{ChargeFilter, SignInForm, Signed};

mod forms;
mod pages;
pub mod settings;

pub use settings::{ConsoleSettings, SecureCookies};

/// The session cookie.
const SESSION_COOKIE: &str = "cg_session";
/// The sign-in form's double-submit cookie.
const SIGN_IN_COOKIE: &str = "cg_signin";
/// What a session's CSRF token is derived for.
const CSRF_PURPOSE: &str = "chargegate console csrf";
/// Rows of the charge table per page.
const PAGE_ROWS: u32 = 25;

/// The console's routes (mounted only when it is enabled).
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(overview))
        .route("/console/login", get(sign_in_page).post(sign_in))
        .route("/console/logout", post(sign_out))
        .route("/console/charges", get(charges))
        .route("/console/charges/{number}", get(charge))
        .route("/console/charges/{number}/decide", post(decide))
        .route("/console/subscriptions", get(subscriptions))
        .route("/console/subscriptions/{number}", get(subscription))
        .route("/console/people", get(people))
        .route("/console/assets/console.css", get(style_sheet))
        .route("/console/assets/icon.svg", get(icon))
        .layer(middleware::map_response(protect))
}

/// Headers on every console answer: nothing but our own style sheet and images may load,
/// no framing, no sniffing, and pages are not cached (they show live data).
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn style_sheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("console.css"),
    )
        .into_response()
}

async fn icon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("icon.svg"),
    )
        .into_response()
}

/// A page that could not be shown: an HTML page with the status and a sentence.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    title: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl Failure {
    fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        Failure {
            status,
            title,
            message: message.into(),
            retry_after: None,
        }
    }

    fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", what)
    }

    fn forged() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Form refused",
            "This form did not come from your current console session (it may be from an \
             older page). Nothing was changed; reload the page and try again.",
        )
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure {
            status: e.code.http_status(),
            title: "Something went wrong",
            message: e.message,
            retry_after: e.retry_after,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Html(pages::failure(self.title, &self.message).into_string()),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

type Answer = Result<Response, Failure>;

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Equal strings, in a time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The request's live session, if it has one; an expired one is ended on the way.
async fn session(state: &AppState, headers: &HeaderMap) -> Result<Option<Signed>, Failure> {
    let Some(token) = cookie(headers, SESSION_COOKIE).and_then(Token::parse) else {
        return Ok(None);
    };
    let hash = token.hash();
    let Some(record) = state.store.session(&hash).await? else {
        return Ok(None);
    };
    let now = state.clock.now();
    if !record.is_live(now, state.console.sessions) {
        state.store.end_session(&hash).await?;
        return Ok(None);
    }
    state.store.touch_session(&hash, now).await?;
    tracing::Span::current().record("operator", record.operator_code.as_str());
    Ok(Some(Signed {
        record,
        hash,
        csrf: token.derive(CSRF_PURPOSE),
    }))
}

/// To the sign-in page. A request that still carried a session cookie had its session
/// end (expired, signed out elsewhere, user disabled): the page says so, and the stale
/// cookie is cleared.
fn to_sign_in(headers: &HeaderMap) -> Response {
    if cookie(headers, SESSION_COOKIE).is_none() {
        return Redirect::to("/console/login").into_response();
    }
    let mut response = Redirect::to("/console/login?ended=1").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, None, false));
    response
}

/// Whether the request reached us over HTTPS: only a trusted proxy can say so.
fn over_https(state: &AppState, peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    let trusted = peer.is_some_and(|p| state.console.trusted_proxies.contains(&p.ip()));
    trusted
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value for a console cookie; `None` clears it.
fn set_cookie(name: &str, value: Option<&str>, secure: bool) -> HeaderValue {
    let mut text = match value {
        Some(v) => format!("{name}={v}; Path=/console; HttpOnly; SameSite=Strict"),
        None => format!("{name}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"),
    };
    if secure {
        text.push_str("; Secure");
    }
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn secure(state: &AppState, peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    match state.console.secure_cookies {
        SecureCookies::Always => true,
        SecureCookies::Never => false,
        SecureCookies::Auto => over_https(state, peer, headers),
    }
}

fn random_secret() -> Result<Token, Failure> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(Token::from_random_bytes(bytes))
}

/// The sign-in page with a fresh double-submit token.
fn sign_in_answer(
    status: StatusCode,
    form: &SignInForm,
    error: Option<&str>,
    notice: Option<&str>,
    secure: bool,
    retry_after: Option<u64>,
) -> Answer {
    let nonce = random_secret()?;
    let mut response = (
        status,
        Html(pages::sign_in(form, nonce.expose(), error, notice).into_string()),
    )
        .into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, Some(nonce.expose()), secure),
    );
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
struct Ended {
    #[serde(default)]
    ended: String,
}

async fn sign_in_page(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ended: Result<Query<Ended>, QueryRejection>,
) -> Answer {
    if session(&state, &headers).await?.is_some() {
        return Ok(Redirect::to("/console/").into_response());
    }
    let secure = secure(&state, peer.map(|p| (p.0).0), &headers);
    let notice = ended
        .is_ok_and(|q| !q.ended.is_empty())
        .then_some("Your session has ended. Please sign in again.");
    sign_in_answer(
        StatusCode::OK,
        &SignInForm::default(),
        None,
        notice,
        secure,
        None,
    )
}

async fn sign_in(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Answer {
    let secure = secure(&state, peer.map(|p| (p.0).0), &headers);
    let Ok(Form(mut form)) = form else {
        return sign_in_answer(
            StatusCode::BAD_REQUEST,
            &SignInForm::default(),
            Some("The form could not be read. Please sign in again."),
            None,
            secure,
            None,
        );
    };
    let password = std::mem::take(&mut form.password);
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or("");
    if expected.is_empty() || !same(expected, &form.csrf) {
        return sign_in_answer(
            StatusCode::FORBIDDEN,
            &form,
            Some("This sign-in form has expired. Nothing was changed; please sign in again."),
            None,
            secure,
            None,
        );
    }
    let user = match check_credentials(&state, &form.organisation, &form.username, &password).await
    {
        Ok(user) => user,
        Err(e) if matches!(e.code, Code::InvalidCredentials | Code::TooManyRequests) => {
            let message = if e.code == Code::TooManyRequests {
                "Too many failed sign-ins for this user. Try again later."
            } else {
                "The username, password or organisation is not correct."
            };
            return sign_in_answer(
                e.code.http_status(),
                &form,
                Some(message),
                None,
                secure,
                e.retry_after,
            );
        }
        Err(e) => return Err(e.into()),
    };
    let secret = random_secret()?;
    let now = state.clock.now();
    state
        .store
        .create_session(&NewSession {
            hash: secret.hash(),
            user_id: user.user_id,
            created_at: now,
            expires_at: now.plus_seconds(state.console.sessions.ttl_seconds),
        })
        .await?;
    let mut response = Redirect::to("/console/").into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, Some(secret.expose()), secure),
    );
    headers.append(header::SET_COOKIE, set_cookie(SIGN_IN_COOKIE, None, secure));
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Answer {
    let Some(signed) = session(&state, &headers).await? else {
        return Ok(to_sign_in(&headers));
    };
    let csrf = form.map(|f| f.0.csrf).unwrap_or_default();
    if !same(&signed.csrf, &csrf) {
        return Err(Failure::forged());
    }
    state.store.end_session(&signed.hash).await?;
    let secure = secure(&state, peer.map(|p| (p.0).0), &headers);
    let mut response = Redirect::to("/console/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, None, secure));
    Ok(response)
}

async fn overview(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    let Some(signed) = session(&state, &headers).await? else {
        return Ok(to_sign_in(&headers));
    };
    let now = state.clock.now();
    let overview = state.store.overview(signed.record.operator_id, now).await?;
    Ok(Html(pages::overview(&signed, &overview, now).into_string()).into_response())
}

async fn charges(
    State(state): State<AppState>,
    headers: HeaderMap,
    filter: Result<Query<ChargeFilter>, QueryRejection>,
) -> Answer {
    let Some(signed) = session(&state, &headers).await? else {
        return Ok(to_sign_in(&headers));
    };
    let filter = filter.map(|q| q.0).unwrap_or_default();
    let page = filter.page.unwrap_or(1).clamp(1, 1_000_000);
    let text = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    };
    // Text that cannot be a customer id or a number matches nothing, which the empty
    // table says well enough.
    let customer = text(&filter.customer).map(CustomerId::parse);
    let number = text(&filter.number).map(ChargeNumber::parse);
    let found = match (customer, number) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => Vec::new(),
        (customer, number) => {
            state
                .store
                .search_charges(&ChargeSearch {
                    operator_id: signed.record.operator_id,
                    group: filter.group(),
                    customer: customer.and_then(Result::ok),
                    number: number.and_then(Result::ok),
                    offset: (page - 1) * u64::from(PAGE_ROWS),
                    limit: PAGE_ROWS + 1,
                })
                .await?
        }
    };
    let more = found.len() > PAGE_ROWS as usize;
    let shown = &found[..found.len().min(PAGE_ROWS as usize)];
    Ok(Html(pages::charges(&signed, &filter, shown, page, more).into_string()).into_response())
}

/// What the charge page says after a decision (from the redirect's query).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Done {
    #[serde(default)]
    pub done: String,
}

async fn charge(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(number): Path<String>,
    done: Result<Query<Done>, QueryRejection>,
) -> Answer {
    let Some(signed) = session(&state, &headers).await? else {
        return Ok(to_sign_in(&headers));
    };
    let done = done.map(|d| d.0).unwrap_or_default();
    charge_answer(&state, &signed, &number, StatusCode::OK, None, &done.done).await
}

/// A charge page of the signed-in operator; another operator's charge is "not found",
/// exactly like a missing one.
async fn charge_answer(
    state: &AppState,
    signed: &Signed,
    number: &str,
    status: StatusCode,
    error: Option<&str>,
    done: &str,
) -> Answer {
    let missing = || Failure::not_found(format!("There is no charge {number}."));
    let Ok(parsed) = ChargeNumber::parse(number) else {
        return Err(missing());
    };
    let Some(record) = state
        .store
        .charge_record(Some(signed.record.operator_id), &parsed)
        .await?
    else {
        return Err(missing());
    };
    Ok((
        status,
        Html(pages::charge(signed, &record, error, done).into_string()),
    )
        .into_response())
}

#[derive(Debug, Default, Deserialize)]
struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reference_number: String,
}

async fn decide(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    Path(number): Path<String>,
    form: Result<Form<DecideForm>, FormRejection>,
) -> Answer {
    let Some(signed) = session(&state, &headers).await? else {
        return Ok(to_sign_in(&headers));
    };
    let Ok(Form(form)) = form else {
        return Err(Failure::forged());
    };
    if !same(&signed.csrf, &form.csrf) {
        return Err(Failure::forged());
    }
    let method = match form.decision.as_str() {
        "accept" => Method::Accept,
        "decline" => Method::Decline,
        _ => {
            return charge_answer(
                &state,
                &signed,
                &number,
                StatusCode::BAD_REQUEST,
                Some("Choose Accept or Decline."),
                "",
            )
            .await;
        }
    };
    let reference = match form.reference_number.trim() {
        "" => None,
        text => match ReferenceNumber::parse(text) {
            Ok(r) => Some(r),
            Err(e) => {
                let message = format!("The reference number is not usable: {e}.");
                return charge_answer(
                    &state,
                    &signed,
                    &number,
                    StatusCode::BAD_REQUEST,
                    Some(&message),
                    "",
                )
                .await;
            }
        },
    };
    let missing = || Failure::not_found(format!("There is no charge {number}."));
    let Ok(parsed) = ChargeNumber::parse(number.as_str()) else {
        return Err(missing());
    };
    let Some(record) = state
        .store
        .charge_record(Some(signed.record.operator_id), &parsed)
        .await?
    else {
        return Err(missing());
    };
    let batch = Batch {
        method,
        operator_id: signed.record.operator_id,
        user_id: signed.record.user_id,
        key_id: None,
        request_id,
        at: state.clock.now(),
        items: vec![ItemInput::valid(ItemRequest {
            number: parsed,
            customer: record.charge.customer.clone(),
            reference,
        })],
        via_console: true,
    };
    let started = Instant::now();
    let verdicts = state.store.apply_batch(&batch).await?;
    state.metrics.batch_transaction(method, started.elapsed());
    state.metrics.items_judged(method, &verdicts);
    match verdicts.first() {
        Some(Verdict::Failed(e)) => {
            let message = format!("Nothing was changed: {}.", e.description);
            charge_answer(
                &state,
                &signed,
                &number,
                StatusCode::CONFLICT,
                Some(&message),
                "",
            )
            .await
        }
        _ => Ok(Redirect::to(&format!(
            "/console/charges/{}?done={}",
            pages::encode(&number),
            method.as_str()
        ))
        .into_response()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Search {
    #[serde(default)]
    pub q: String,
}

async fn subscriptions(
    State(state): State<AppState>,
    headers: HeaderMap,
    search: Result<Query<Search>, QueryRejection>,
) -> Answer {
    let Some(signed) = session(&state, &headers).await? else {
        return Ok(to_sign_in(&headers));
    };
    let search = search.map(|q| q.0).unwrap_or_default();
    let found = state
        .store
        .search_subscriptions(signed.record.operator_id, search.q.trim(), 50)
        .await?;
    Ok(Html(pages::subscriptions(&signed, &search.q, &found).into_string()).into_response())
}

async fn subscription(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Answer {
    let Some(signed) = session(&state, &headers).await? else {
        return Ok(to_sign_in(&headers));
    };
    let operator_id = signed.record.operator_id;
    let Some((hit, events)) = state.store.subscription_page(operator_id, &number).await? else {
        return Err(Failure::not_found(format!(
            "There is no subscription {number}."
        )));
    };
    // Promotions and prices exactly as `subscriptions/show` computes them.
    let now = state.clock.now();
    let shown = state
        .store
        .show_subscriptions(&ShowQuery {
            operator_id,
            customer: Some(hit.customer.clone()),
            netflix_customer: None,
            since: months_before(now, LOOK_BACK_MONTHS),
        })
        .await?;
    let full = match shown {
        ShowOutcome::Found(all) => all.into_iter().find(|s| s.number == hit.number),
        ShowOutcome::Mismatch => None,
    };
    Ok(
        Html(pages::subscription(&signed, &hit, full.as_ref(), &events).into_string())
            .into_response(),
    )
}

async fn people(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    let Some(signed) = session(&state, &headers).await? else {
        return Ok(to_sign_in(&headers));
    };
    let now = state.clock.now();
    let (users, keys) = state
        .store
        .operator_people(signed.record.operator_id)
        .await?;
    Ok(Html(pages::people(&signed, &users, &keys, now).into_string()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name_among_several_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; cg_session_x=2"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("other=3;cg_session=abc"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "a"), Some("1"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn csrf_tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }

    #[test]
    fn links_percent_encode_what_a_path_or_query_cannot_hold() {
        assert_eq!(pages::encode("I00002706"), "I00002706");
        assert_eq!(pages::encode("a/b c?&<"), "a%2Fb%20c%3F%26%3C");
        assert_eq!(pages::encode("α"), "%CE%B1");
    }
}
