//! The console's HTML, written with maud: the templates are Rust, checked when chargegate
//! compiles, and every value inserted with `(…)` is escaped. No inline style or script
//! (the Content-Security-Policy would refuse them): looks come from `console.css`.

use chargegate_core::accounts::UserSummary;
use chargegate_core::apikey::ApiKeyInfo;
use chargegate_core::audit::{ChargeRecord, HistoryEntry};
use chargegate_core::charge::{Charge, ChargeStatus};
use chargegate_core::clock::Timestamp;
use chargegate_core::console::{DayDecisions, Overview, SubscriptionEvent, SubscriptionHit};
use chargegate_core::money::Money;
use chargegate_core::subscription::{LifeCycleState, Subscription, formatted_price};
use maud::{DOCTYPE, Markup, html};

use super::forms::{ChargeFilter, SignInForm, Signed};

/// Percent-encodes text for a path segment or a query value.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `2026-11-01 09:30` (UTC), for tables.
fn when(t: Timestamp) -> String {
    let s = t.to_string();
    format!("{} {}", &s[..10], &s[11..16])
}

/// The whole timestamp, for `datetime` attributes and titles.
fn iso(t: Timestamp) -> String {
    format!("{t}Z")
}

/// A duration in the two largest units: `3 d 4 h`, `12 min`.
fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min")
    }
}

fn money(m: &Money) -> String {
    formatted_price(m)
}

fn status_badge(status: ChargeStatus) -> Markup {
    let class = match status {
        ChargeStatus::Pending => "pending",
        ChargeStatus::Approved => "approved",
        ChargeStatus::Declined => "declined",
        ChargeStatus::BadRequest | ChargeStatus::Rejected => "other",
    };
    html! { span class={ "badge " (class) } { (status.as_str()) } }
}

fn state_badge(state: LifeCycleState) -> Markup {
    let class = match state {
        LifeCycleState::Effective => "approved",
        LifeCycleState::NotEffective => "pending",
        LifeCycleState::Cancelled => "declined",
    };
    html! { span class={ "badge " (class) } { (state.as_str()) } }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Overview,
    Charges,
    Subscriptions,
    People,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · chargegate" }
            link rel="stylesheet" href="/console/assets/console.css";
            link rel="icon" href="/console/assets/icon.svg" type="image/svg+xml";
        }
    }
}

/// A signed-in page: the bar with the operator, the sections and sign-out.
fn page(signed: &Signed, section: Section, title: &str, body: Markup) -> Markup {
    let link = |target: Section, href: &str, label: &str| {
        html! {
            @if section == target {
                a href=(href) aria-current="page" { (label) }
            } @else {
                a href=(href) { (label) }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.bar {
                    a.brand href="/console/" {
                        img src="/console/assets/icon.svg" alt="" width="22" height="22";
                        span { "chargegate" }
                    }
                    nav aria-label="Sections" {
                        (link(Section::Overview, "/console/", "Overview"))
                        (link(Section::Charges, "/console/charges", "Charges"))
                        (link(Section::Subscriptions, "/console/subscriptions", "Subscriptions"))
                        (link(Section::People, "/console/people", "Users & keys"))
                    }
                    div.who {
                        span.operator title="Operator" { (signed.record.operator_name) }
                        span.user { (signed.record.username.as_str()) }
                        form method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(signed.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page shown without a session (sign-in, failures).
fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                main {
                    (body)
                }
            }
        }
    }
}

pub(crate) fn failure(title: &str, message: &str) -> Markup {
    bare(
        title,
        html! {
            section.card.narrow {
                h1 { (title) }
                p { (message) }
                p { a href="/console/" { "Back to the console" } }
            }
        },
    )
}

pub(crate) fn sign_in(
    form: &SignInForm,
    nonce: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> Markup {
    bare(
        "Sign in",
        html! {
            section.card.narrow {
                div.brand.large {
                    img src="/console/assets/icon.svg" alt="" width="32" height="32";
                    span { "chargegate" }
                }
                h1 { "Sign in to the console" }
                @if let Some(error) = error {
                    p.alert role="alert" { (error) }
                }
                @if let Some(notice) = notice {
                    p.notice role="status" { (notice) }
                }
                form.stack method="post" action="/console/login" {
                    input type="hidden" name="csrf" value=(nonce);
                    label for="organisation" { "Organisation" }
                    input #organisation type="text" name="organisation" required
                        autocomplete="organization" value=(form.organisation);
                    label for="username" { "Username" }
                    input #username type="text" name="username" required
                        autocomplete="username" value=(form.username);
                    label for="password" { "Password" }
                    input #password type="password" name="password" required
                        autocomplete="current-password";
                    button.primary type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// The chart: one stacked bar per day, outcomes by colour, drawn here as SVG.
// x, y, w, h and n are the SVG geometry of the bars, named as SVG names them.
#[allow(clippy::many_single_char_names)]
fn chart(days: &[DayDecisions]) -> Markup {
    const WIDTH: u64 = 600;
    const HEIGHT: u64 = 160;
    const TOP: u64 = 12;
    let slot = WIDTH / days.len().max(1) as u64;
    let most = days.iter().map(DayDecisions::total).max().unwrap_or(0);
    let peak = most.max(1);
    let scale = |n: u64| n * (HEIGHT - TOP) / peak;
    let total: u64 = days.iter().map(DayDecisions::total).sum();
    let label = format!(
        "Decisions per day over the last {} days: {total} in all, at most {most} in a day.",
        days.len()
    );
    let date = |day: i64| {
        Timestamp::from_unix(day * 86_400)
            .map(|t| t.to_string()[..10].to_owned())
            .unwrap_or_default()
    };
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 22) } role="img" aria-labelledby="chart-title" {
                title #chart-title { (label) }
                line.axis x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) {}
                @for (i, day) in days.iter().enumerate() {
                    @let x = i as u64 * slot + 2;
                    @let w = slot.saturating_sub(4).max(1);
                    @let a = scale(day.approved);
                    @let d = scale(day.declined);
                    @let o = scale(day.other);
                    g {
                        title { (date(day.day)) ": " (day.approved) " approved, " (day.declined) " declined, " (day.other) " other" }
                        @if a > 0 { rect.approved x=(x) y=(HEIGHT - a) width=(w) height=(a) {} }
                        @if d > 0 { rect.declined x=(x) y=(HEIGHT - a - d) width=(w) height=(d) {} }
                        @if o > 0 { rect.other x=(x) y=(HEIGHT - a - d - o) width=(w) height=(o) {} }
                    }
                }
                @if let (Some(first), Some(last)) = (days.first(), days.last()) {
                    text.tick x="0" y=(HEIGHT + 16) { (date(first.day)) }
                    text.tick.end x=(WIDTH) y=(HEIGHT + 16) { (date(last.day)) }
                }
            }
            figcaption.legend {
                span.key.approved { "Approved" }
                span.key.declined { "Declined" }
                span.key.other { "Bad request / rejected" }
            }
        }
    }
}

pub(crate) fn overview(signed: &Signed, overview: &Overview, now: Timestamp) -> Markup {
    let today = overview.days.last().map_or(0, DayDecisions::total);
    let pending = overview
        .counts
        .iter()
        .find(|(s, _)| *s == ChargeStatus::Pending)
        .map_or(0, |(_, n)| *n);
    page(
        signed,
        Section::Overview,
        "Overview",
        html! {
            section.tiles aria-label="Charges by status" {
                @for (status, n) in &overview.counts {
                    a.tile href={ "/console/charges?status=" (if *status == ChargeStatus::Pending { "pending" } else { "processed" }) } {
                        (status_badge(*status))
                        span.figure { (n) }
                    }
                }
            }
            section.tiles aria-label="Work" {
                div.tile {
                    span.caption { "Oldest pending charge" }
                    span.figure {
                        @if let Some(oldest) = overview.oldest_pending {
                            (age(now.unix() - oldest.unix()))
                        } @else { "none" }
                    }
                    @if pending > 0 { span.caption { (pending) " waiting" } }
                }
                div.tile {
                    span.caption { "Decisions today (UTC)" }
                    span.figure { (today) }
                }
                div.tile {
                    span.caption { "Events waiting for Netflix" }
                    span.figure { (overview.outbox.waiting) }
                    span.caption {
                        @if let Some(oldest) = overview.outbox.oldest {
                            "oldest " (age(now.unix() - oldest.unix()))
                        } @else { "all delivered" }
                    }
                }
            }
            section.card {
                h2 { "Decisions, last 30 days" }
                (chart(&overview.days))
            }
        },
    )
}

fn charge_rows(charges: &[Charge]) -> Markup {
    html! {
        div.scroll {
            table {
                thead {
                    tr {
                        th scope="col" { "Number" }
                        th scope="col" { "Customer" }
                        th.num scope="col" { "Amount" }
                        th.num scope="col" { "Local amount" }
                        th scope="col" { "Status" }
                        th scope="col" { "Received" }
                    }
                }
                tbody {
                    @for c in charges {
                        tr {
                            td { a href={ "/console/charges/" (encode(c.number.as_str())) } { (c.number.as_str()) } }
                            td.text { (c.customer.as_str()) }
                            td.num { (money(&c.amount)) }
                            td.num { (money(&c.local_amount)) }
                            td { (status_badge(c.status)) }
                            td.time { time datetime=(iso(c.received_on)) { (when(c.received_on)) } }
                        }
                    }
                    @if charges.is_empty() {
                        tr { td.empty colspan="6" { "No charge matches." } }
                    }
                }
            }
        }
    }
}

pub(crate) fn charges(
    signed: &Signed,
    filter: &ChargeFilter,
    charges: &[Charge],
    page_number: u64,
    more: bool,
) -> Markup {
    let query = |page: u64| {
        format!(
            "/console/charges?status={}&customer={}&number={}&page={page}",
            encode(&filter.status),
            encode(&filter.customer),
            encode(&filter.number)
        )
    };
    let option = |value: &str, label: &str| {
        html! {
            @if filter.status == value {
                option value=(value) selected { (label) }
            } @else {
                option value=(value) { (label) }
            }
        }
    };
    page(
        signed,
        Section::Charges,
        "Charges",
        html! {
            form.filters method="get" action="/console/charges" {
                div {
                    label for="status" { "Status" }
                    select #status name="status" {
                        (option("", "All"))
                        (option("pending", "Pending"))
                        (option("processed", "Processed"))
                    }
                }
                div {
                    label for="customer" { "Customer" }
                    input #customer type="search" name="customer" value=(filter.customer);
                }
                div {
                    label for="number" { "Charge number" }
                    input #number type="search" name="number" value=(filter.number);
                }
                button type="submit" { "Filter" }
            }
            (charge_rows(charges))
            nav.pager aria-label="Pages" {
                @if page_number > 1 {
                    a href=(query(page_number - 1)) rel="prev" { "← Newer" }
                }
                span { "Page " (page_number) }
                @if more {
                    a href=(query(page_number + 1)) rel="next" { "Older →" }
                }
            }
        },
    )
}

fn optional_time(t: Option<Timestamp>) -> Markup {
    html! {
        @if let Some(t) = t {
            time datetime=(iso(t)) { (when(t)) }
        } @else {
            span.muted { "—" }
        }
    }
}

fn timeline(history: &[HistoryEntry]) -> Markup {
    html! {
        ol.timeline {
            @for h in history {
                li class={ "event " (h.to_status.as_str().to_ascii_lowercase()) } {
                    div.what {
                        strong { (h.event.as_str()) }
                        " "
                        @if let Some(from) = h.from_status {
                            @if from != h.to_status {
                                (status_badge(from)) " → "
                            }
                        }
                        (status_badge(h.to_status))
                    }
                    div.meta {
                        time datetime=(iso(h.at)) { (when(h.at)) }
                        " · " span.actor { (h.actor.to_string()) }
                        @if let Some(r) = &h.reference_number {
                            " · reference " span.text { (r) }
                        }
                        @if let Some(r) = &h.reason {
                            " · " span.text { (r) }
                        }
                        @if let Some(id) = &h.request_id {
                            " · request " code { (id) }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) fn charge(
    signed: &Signed,
    record: &ChargeRecord,
    error: Option<&str>,
    done: &str,
) -> Markup {
    let c = &record.charge;
    let title = format!("Charge {}", c.number.as_str());
    page(
        signed,
        Section::Charges,
        &title,
        html! {
            @if let Some(error) = error {
                p.alert role="alert" { (error) }
            }
            @match done {
                "accept" => { p.notice role="status" { "Accepted: the charge is now " (c.status.as_str()) "." } }
                "decline" => { p.notice role="status" { "Declined: the charge is now " (c.status.as_str()) "." } }
                _ => {}
            }
            div.columns {
                section.card {
                    h2 { "Charge" }
                    dl.fields {
                        dt { "Status" } dd { (status_badge(c.status)) }
                        dt { "Customer" } dd.text {
                            a href={ "/console/charges?customer=" (encode(c.customer.as_str())) } { (c.customer.as_str()) }
                        }
                        dt { "Netflix customer (PAI)" } dd.text {
                            @if let Some(p) = &record.netflix_customer { (p) } @else { span.muted { "—" } }
                        }
                        dt { "Amount" } dd.num { (money(&c.amount)) }
                        dt { "Local amount" } dd.num { (money(&c.local_amount)) }
                        dt { "Paid through" } dd { (c.paid_through_date.to_string()) }
                        dt { "Received" } dd { (optional_time(Some(c.received_on))) }
                        dt { "Approved" } dd { (optional_time(c.set_as_approved_on)) }
                        dt { "Declined" } dd { (optional_time(c.set_as_declined_on)) }
                        dt { "Bad request" } dd { (optional_time(c.set_as_bad_request_on)) }
                        dt { "Rejected" } dd { (optional_time(c.set_as_rejected_on)) }
                        dt { "Reference number" } dd.text {
                            @if let Some(r) = &record.reference_number { (r) } @else { span.muted { "—" } }
                        }
                        dt { "Acknowledged as" } dd {
                            @if let Some(s) = record.acknowledged_status { (status_badge(s)) } @else { span.muted { "—" } }
                        }
                        dt { "Subscription" } dd {
                            @if let Some(s) = &record.subscription_number {
                                a href={ "/console/subscriptions/" (encode(s)) } { (s) }
                            } @else { span.muted { "none" } }
                        }
                    }
                }
                div {
                    @if c.status == ChargeStatus::Pending {
                        section.card.decide {
                            h2 { "Decide" }
                            form.stack method="post" action={ "/console/charges/" (encode(c.number.as_str())) "/decide" } {
                                input type="hidden" name="csrf" value=(signed.csrf);
                                label for="reference_number" { "Reference number (optional)" }
                                input #reference_number type="text" name="reference_number" maxlength="128";
                                div.buttons {
                                    button.accept type="submit" name="decision" value="accept" { "Accept" }
                                    button.decline type="submit" name="decision" value="decline" { "Decline" }
                                }
                                p.hint { "Declining ends the customer's Netflix subscription." }
                            }
                        }
                    }
                    section.card {
                        h2 { "History" }
                        (timeline(&record.history))
                    }
                }
            }
        },
    )
}

fn subscription_rows(found: &[SubscriptionHit]) -> Markup {
    html! {
        div.scroll {
            table {
                thead {
                    tr {
                        th scope="col" { "Number" }
                        th scope="col" { "Customer" }
                        th scope="col" { "Netflix customer (PAI)" }
                        th scope="col" { "State" }
                        th scope="col" { "Netflix" }
                        th scope="col" { "Created" }
                    }
                }
                tbody {
                    @for s in found {
                        tr {
                            td { a href={ "/console/subscriptions/" (encode(&s.number)) } { (s.number) } }
                            td.text { (s.customer.as_str()) }
                            td.text { @if let Some(p) = &s.netflix_customer { (p) } @else { span.muted { "—" } } }
                            td { (state_badge(s.state)) }
                            td { (s.netflix_state.as_str()) }
                            td.time { (when(s.created_on)) }
                        }
                    }
                    @if found.is_empty() {
                        tr { td.empty colspan="6" { "No subscription matches." } }
                    }
                }
            }
        }
    }
}

pub(crate) fn subscriptions(signed: &Signed, q: &str, found: &[SubscriptionHit]) -> Markup {
    page(
        signed,
        Section::Subscriptions,
        "Subscriptions",
        html! {
            form.filters method="get" action="/console/subscriptions" {
                div {
                    label for="q" { "Customer or Netflix PAI" }
                    input #q type="search" name="q" value=(q);
                }
                button type="submit" { "Search" }
            }
            @if q.trim().is_empty() {
                p.hint { "The newest subscriptions; search for a customer's or a PAI's." }
            }
            (subscription_rows(found))
        },
    )
}

pub(crate) fn subscription(
    signed: &Signed,
    hit: &SubscriptionHit,
    full: Option<&Subscription>,
    events: &[SubscriptionEvent],
) -> Markup {
    let title = format!("Subscription {}", hit.number);
    page(
        signed,
        Section::Subscriptions,
        &title,
        html! {
            div.columns {
                section.card {
                    h2 { "Subscription" }
                    dl.fields {
                        dt { "State" } dd { (state_badge(hit.state)) }
                        dt { "Netflix state" } dd { (hit.netflix_state.as_str()) }
                        dt { "Customer" } dd.text {
                            a href={ "/console/charges?customer=" (encode(hit.customer.as_str())) } { (hit.customer.as_str()) }
                        }
                        dt { "Netflix customer (PAI)" } dd.text {
                            @if let Some(p) = &hit.netflix_customer { (p) } @else { span.muted { "—" } }
                        }
                        dt { "Created" } dd { (optional_time(Some(hit.created_on))) }
                        dt { "Cancelled" } dd { (optional_time(full.and_then(|s| s.cancelled_on))) }
                    }
                    h2 { "Prices (last 10 months)" }
                    @match full.map(|s| &s.prices[..]) {
                        Some(prices) if !prices.is_empty() => {
                            ul.plain { @for p in prices { li.num { (money(p)) } } }
                        }
                        _ => { p.muted { "No charge yet." } }
                    }
                    h2 { "Promotions (last 10 months)" }
                    @match full.map(|s| &s.promotions[..]) {
                        Some(promotions) if !promotions.is_empty() => {
                            ul.plain {
                                @for p in promotions {
                                    li { strong { (p.code.as_str()) } " — " (p.name) }
                                }
                            }
                        }
                        _ => { p.muted { "None." } }
                    }
                }
                section.card {
                    h2 { "History" }
                    ol.timeline {
                        @for e in events {
                            li class={ "event " (e.to_state.as_deref().unwrap_or("").to_ascii_lowercase()) } {
                                div.what {
                                    strong { (e.event) }
                                    @if let Some(to) = &e.to_state {
                                        " "
                                        @if let Some(from) = &e.from_state { @if from != to { (from) " → " } }
                                        (to)
                                    }
                                }
                                div.meta {
                                    time datetime=(iso(e.at)) { (when(e.at)) }
                                    @if let Some(u) = &e.username { " · " span.actor { (if e.via_console { "console:" } else { "user:" }) (u) } }
                                    @if let Some(n) = &e.charge_number {
                                        " · charge " a href={ "/console/charges/" (encode(n)) } { (n) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

pub(crate) fn people(
    signed: &Signed,
    users: &[UserSummary],
    keys: &[ApiKeyInfo],
    now: Timestamp,
) -> Markup {
    page(
        signed,
        Section::People,
        "Users & keys",
        html! {
            p.hint { "Read only: people and keys are managed with the chargegate command line." }
            section.card {
                h2 { "Users" }
                div.scroll {
                    table {
                        thead { tr {
                            th scope="col" { "Username" }
                            th scope="col" { "Enabled" }
                            th scope="col" { "Last sign-in" }
                            th scope="col" { "Sign-in" }
                        } }
                        tbody {
                            @for u in users {
                                tr {
                                    td.text { (u.username.as_str()) }
                                    td { @if u.enabled { span.badge.approved { "enabled" } } @else { span.badge.declined { "disabled" } } }
                                    td { (optional_time(u.last_login)) }
                                    td {
                                        @if u.locked_until.is_some_and(|t| t > now) {
                                            span.badge.declined { "locked out" }
                                        } @else if u.failed_attempts > 0 {
                                            (u.failed_attempts) " failed"
                                        } @else { span.muted { "ok" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.card {
                h2 { "Web API keys" }
                div.scroll {
                    table {
                        thead { tr {
                            th scope="col" { "Prefix" }
                            th scope="col" { "User" }
                            th scope="col" { "Name" }
                            th scope="col" { "Created" }
                            th scope="col" { "State" }
                        } }
                        tbody {
                            @for k in keys {
                                tr {
                                    td { code { (k.prefix) } }
                                    td.text { (k.username.as_str()) }
                                    td.text { @if let Some(n) = &k.name { (n) } @else { span.muted { "—" } } }
                                    td { (when(k.created_at)) }
                                    td { @if k.revoked_at.is_some() { span.badge.declined { "revoked" } } @else { span.badge.approved { "active" } } }
                                }
                            }
                            @if keys.is_empty() {
                                tr { td.empty colspan="5" { "No key." } }
                            }
                        }
                    }
                }
            }
        },
    )
}
