//! The JSON of an outbox event: what `connector/outbox` returns and what the webhook
//! pushes, in one place, so the two can never differ.

use chargegate_core::clock::Timestamp;
use chargegate_core::connector::{EventSubject, OutboxEvent};
use chargegate_core::money::Money;
use serde_json::{Value, json};

use crate::edge::envelope::JsonAmount;

/// An event as the connector receives it.
pub fn event_json(event: &OutboxEvent) -> Value {
    let stamp = |t: Option<Timestamp>| t.map(|t| t.to_string());
    let mut object = json!({
        "id": event.id.to_string(),
        "type": event.kind.as_str(),
        "operator": event.operator.as_str(),
        "occurred_on": event.occurred_on.to_string(),
    });
    let Some(map) = object.as_object_mut() else {
        return object;
    };
    match &event.subject {
        EventSubject::Charge {
            charge: c,
            netflix_charge_id,
        } => {
            let amount = |m: Money| serde_json::to_value(JsonAmount(m)).unwrap_or(Value::Null);
            map.insert(
                "charge".into(),
                json!({
                    "number": c.number.as_str(),
                    "billing_system_customer_identifier": c.customer.as_str(),
                    "amount": amount(c.amount),
                    "currency": c.amount.currency().code(),
                    "local_currency_amount": amount(c.local_amount),
                    "local_currency": c.local_amount.currency().code(),
                    "paid_through_date": c.paid_through_date.to_string(),
                    "charge_status": c.status.as_str(),
                    "received_on": c.received_on.to_string(),
                    "set_as_approved_on": stamp(c.set_as_approved_on),
                    "set_as_declined_on": stamp(c.set_as_declined_on),
                    "set_as_bad_request_on": stamp(c.set_as_bad_request_on),
                    "set_as_rejected_request_on": stamp(c.set_as_rejected_on),
                    "netflix_charge_identifier": netflix_charge_id,
                }),
            );
            map.insert(
                "reference_number".into(),
                event
                    .reference_number
                    .clone()
                    .map_or(Value::Null, Value::String),
            );
        }
        EventSubject::Subscription(s) => {
            let mut subscription = json!({
                "subscription_number": s.number,
                "billing_system_customer_identifier": s.customer.as_str(),
                "netflix_customer_identifier": s.netflix_customer,
                "life_cycle_state": s.state.as_str(),
                "netflix_sate": s.netflix_state.as_str(),
                "created_on": s.created_on.to_string(),
                "cancelled_on": stamp(s.cancelled_on),
            });
            if let (Some((details, channel)), Some(sub)) =
                (&s.customer_details, subscription.as_object_mut())
            {
                let object = |text: &Option<String>| {
                    text.as_deref()
                        .and_then(|t| serde_json::from_str::<Value>(t).ok())
                        .unwrap_or(Value::Null)
                };
                sub.insert(
                    "customer".into(),
                    json!({
                        "customer_first_name": details.first_name,
                        "customer_last_name": details.last_name,
                        "customer_address": object(&details.address),
                        "customer_email": object(&details.email),
                        "customer_phone": object(&details.phone),
                    }),
                );
                sub.insert(
                    "channel".into(),
                    channel.clone().map_or(Value::Null, Value::String),
                );
            }
            map.insert("subscription".into(), subscription);
        }
    }
    object
}
