//! Stored subscription, promotion and key columns back into domain values, for both
//! backends (as `rows` does for charges).

use chargegate_core::apikey::ApiKeyInfo;
use chargegate_core::store::StoreResult;
use chargegate_core::subscription::{
    LifeCycleState, NetflixState, Promotion, PromotionCode, Subscription,
};
use chargegate_core::text::{OperatorCode, Username};

use crate::error::corrupt;
use crate::rows::{customer, money, opt_timestamp, timestamp};

pub(crate) struct SubscriptionRow {
    pub id: i64,
    pub number: String,
    pub customer: String,
    pub netflix_customer: Option<String>,
    pub state: String,
    pub netflix_state: String,
    pub created_at: i64,
    pub cancelled_at: Option<i64>,
}

impl SubscriptionRow {
    /// The subscription, with its prices and promotions still to be filled in.
    pub(crate) fn into_subscription(self) -> StoreResult<(i64, Subscription)> {
        Ok((
            self.id,
            Subscription {
                number: self.number,
                customer: customer(self.customer)?,
                netflix_customer: self.netflix_customer,
                state: LifeCycleState::parse(&self.state)
                    .ok_or_else(|| corrupt(format_args!("life cycle state {:?}", self.state)))?,
                netflix_state: NetflixState::parse(&self.netflix_state).ok_or_else(|| {
                    corrupt(format_args!("netflix state {:?}", self.netflix_state))
                })?,
                created_on: timestamp(self.created_at)?,
                cancelled_on: opt_timestamp(self.cancelled_at)?,
                promotions: Vec::new(),
                prices: Vec::new(),
            },
        ))
    }
}

pub(crate) struct PromotionRow {
    pub code: String,
    pub name: String,
    pub description: Option<String>,
    pub effective_from: i64,
    pub expires_on: Option<i64>,
}

impl PromotionRow {
    pub(crate) fn into_promotion(self) -> StoreResult<Promotion> {
        Ok(Promotion {
            code: PromotionCode::parse(self.code).map_err(corrupt)?,
            name: self.name,
            description: self.description,
            effective_from: timestamp(self.effective_from)?,
            expires_on: opt_timestamp(self.expires_on)?,
        })
    }
}

pub(crate) fn price(minor: i64, currency: &str) -> StoreResult<chargegate_core::Money> {
    money(minor, currency)
}

pub(crate) fn operator_code(code: String) -> StoreResult<OperatorCode> {
    OperatorCode::parse(code).map_err(corrupt)
}

pub(crate) struct KeyRow {
    pub prefix: String,
    pub operator: String,
    pub username: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl KeyRow {
    pub(crate) fn into_info(self) -> StoreResult<ApiKeyInfo> {
        Ok(ApiKeyInfo {
            prefix: self.prefix,
            operator: operator_code(self.operator)?,
            username: Username::parse(self.username).map_err(corrupt)?,
            name: self.name,
            created_at: timestamp(self.created_at)?,
            revoked_at: opt_timestamp(self.revoked_at)?,
        })
    }
}

/// `S` and eight digits: the number of the subscription with store id `id`.
pub(crate) fn subscription_number(id: i64) -> String {
    format!("S{id:08}")
}
