//! `serve --demo`: a ready-to-try operator, so the README's walk-through works at once.

use chargegate_core::Database;
use chargegate_core::clock::{Date, Timestamp};
use chargegate_core::money::{Currency, Money};
use chargegate_core::store::{
    ImportOutcome, NewCharge, NewOperator, NewUser, Operator, StoreError,
};
use chargegate_core::text::{ChargeNumber, CustomerId, OperatorCode, Username};

pub mod simulator;

pub const OPERATOR: &str = "pci";
pub const USERNAME: &str = "demo";
pub const PASSWORD: &str = "demo";

/// (number, customer, amount, currency, local amount in EUR, paid through, received on)
const CHARGES: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
    (
        "I00002706",
        "pci155",
        "11.99",
        "EUR",
        "11.99",
        "2026-12-31",
        "2026-11-20T06:00:00",
    ),
    (
        "I00002707",
        "pci156",
        "15.99",
        "EUR",
        "15.99",
        "2026-12-31",
        "2026-11-20T06:00:01",
    ),
    (
        "I00002708",
        "pci157",
        "7.99",
        "EUR",
        "7.99",
        "2026-12-31",
        "2026-11-20T06:00:02",
    ),
    (
        "I00002709",
        "pci158",
        "17.99",
        "USD",
        "16.62",
        "2026-12-31",
        "2026-11-21T06:00:00",
    ),
    (
        "I00002710",
        "pci155",
        "4.99",
        "EUR",
        "4.99",
        "2026-12-31",
        "2026-11-21T06:00:01",
    ),
    (
        "I00002711",
        "pci159",
        "13.49",
        "GBP",
        "15.37",
        "2026-12-31",
        "2026-11-22T06:00:00",
    ),
];

/// The name the demo gives its operator: the mark by which it knows the operator is its
/// own. Any other operator `pci` belongs to someone else and is never touched.
pub const OPERATOR_NAME: &str = "chargegate demo (serve --demo)";

/// Names earlier versions of the demo gave their operator.
const EARLIER_OPERATOR_NAMES: &[&str] = &["PCI demo operator"];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("demo data is invalid: {0}")]
    Data(String),
    #[error("demo charges clash with stored ones: {0}")]
    Clash(String),
    /// The database holds data the demo did not create; nothing was written.
    #[error("{0}")]
    NotOurs(String),
}

fn data<E: std::fmt::Display>(e: E) -> DemoError {
    DemoError::Data(e.to_string())
}

fn is_demo(operator: &Operator) -> bool {
    operator.name == OPERATOR_NAME || EARLIER_OPERATOR_NAMES.contains(&operator.name.as_str())
}

/// The demo's operator: found when the demo created it before, created when the database
/// is empty, refused otherwise.
async fn demo_operator(
    store: &dyn Database,
    code: &OperatorCode,
    empty: bool,
) -> Result<Operator, DemoError> {
    let not_ours = || {
        DemoError::NotOurs(format!(
            "operator '{OPERATOR}' exists and was not created by the demo"
        ))
    };
    if let Some(operator) = store.operator_by_code(code).await? {
        return if is_demo(&operator) {
            Ok(operator)
        } else {
            Err(not_ours())
        };
    }
    if !empty {
        return Err(DemoError::NotOurs(
            "the database holds operators, users or charges that the demo did not create".into(),
        ));
    }
    let created = store
        .create_operator(&NewOperator {
            code: code.clone(),
            name: OPERATOR_NAME.into(),
            local_currency: Currency::parse("EUR").map_err(data)?,
        })
        .await;
    match created {
        Ok(operator) => Ok(operator),
        // Another process created `pci` in the meantime: the demo's own, or not.
        Err(StoreError::Conflict(_)) => match store.operator_by_code(code).await? {
            Some(operator) if is_demo(&operator) => Ok(operator),
            _ => Err(not_ours()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Creates, if absent, operator `pci` (EUR), user `demo`/`demo` and a handful of PENDING
/// charges including `I00002706` for `pci155`. Running it again changes nothing.
///
/// The demo only ever writes into an empty database (`empty`: it holds no operator, user,
/// token or charge) or one it prepared itself (its operator carries [`OPERATOR_NAME`]): a
/// real operator `pci` must never gain a user with a published password, nor fake charges.
pub async fn prepare(store: &dyn Database, empty: bool) -> Result<(), DemoError> {
    let code = OperatorCode::parse(OPERATOR).map_err(data)?;
    let operator = demo_operator(store, &code, empty).await?;
    let username = Username::parse(USERNAME).map_err(data)?;
    if store.login_user(&code, &username).await?.is_none() {
        let password_hash = crate::auth::passwords::hash(PASSWORD).map_err(data)?;
        store
            .create_user(&NewUser {
                operator_id: operator.id,
                username,
                password_hash,
            })
            .await?;
    }
    let mut charges = Vec::new();
    for &(number, customer, amount, currency, local, paid, received) in CHARGES {
        let currency = Currency::parse(currency).map_err(data)?;
        charges.push(NewCharge {
            operator_id: operator.id,
            number: Some(ChargeNumber::parse(number).map_err(data)?),
            customer: CustomerId::parse(customer).map_err(data)?,
            netflix_customer: None,
            amount: Money::parse(amount, currency).map_err(data)?,
            local_amount: Money::parse(local, operator.local_currency).map_err(data)?,
            paid_through_date: Date::parse(paid).map_err(data)?,
            received_on: Some(Timestamp::parse(received).map_err(data)?),
            status: None,
        });
    }
    match store
        .import_charges(charges, Timestamp::now(), std::sync::Arc::new(|_| {}))
        .await?
    {
        ImportOutcome::Imported(summary) => {
            tracing::info!(
                operator = OPERATOR,
                user = USERNAME,
                added = summary.added,
                "demo data ready"
            );
            Ok(())
        }
        ImportOutcome::Refused(conflicts) => Err(DemoError::Clash(
            conflicts
                .iter()
                .map(|c| c.problem.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

/// The name of the connector key the simulated Netflix side uses.
pub const SIMULATOR_KEY_NAME: &str = "simulated Netflix side (serve --simulate-netflix)";

/// A fresh connector key of the demo operator for the simulated Netflix side. Each start
/// makes its own and revokes the earlier ones, so no unused key stays live.
pub async fn connector_key(store: &dyn Database) -> Result<String, DemoError> {
    use chargegate_core::apikey::{ApiKey, KEY_BYTES};
    use chargegate_core::connector::{CONNECTOR_KEY_MARK, NewConnectorKey};
    let code = OperatorCode::parse(OPERATOR).map_err(data)?;
    let operator = store
        .operator_by_code(&code)
        .await?
        .filter(is_demo)
        .ok_or_else(|| DemoError::NotOurs(format!("no demo operator '{OPERATOR}'")))?;
    let keys = store.connector_keys(Some(operator.id)).await?;
    for old in keys
        .iter()
        .filter(|k| k.revoked_at.is_none() && k.name.as_deref() == Some(SIMULATOR_KEY_NAME))
    {
        store
            .revoke_connector_key(&old.prefix, Timestamp::now())
            .await?;
    }
    let taken: std::collections::HashSet<&str> = keys.iter().map(|k| k.prefix.as_str()).collect();
    let key = loop {
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(data)?;
        let key = ApiKey::marked(CONNECTOR_KEY_MARK, bytes);
        if !taken.contains(key.prefix().as_str()) {
            break key;
        }
    };
    store
        .create_connector_key(&NewConnectorKey {
            operator_id: operator.id,
            prefix: key.prefix(),
            hash: key.hash(),
            name: Some(SIMULATOR_KEY_NAME.into()),
            created_at: Timestamp::now(),
        })
        .await?;
    Ok(key.expose().to_owned())
}
