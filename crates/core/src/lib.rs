//! chargegate's domain, free of HTTP and SQL.
//!
//! Values are parsed once, at the edge, into the types of [`text`], [`money`] and
//! [`clock`]; past that point an invalid charge number or a float amount cannot exist.
//! The per-item rules of the batch methods (accept, decline, acknowledge) live in
//! [`batch`] as a pure function of the request items and a snapshot of the stored
//! charges, so every storage backend applies exactly the same rules.

pub mod accounts;
pub mod apikey;
pub mod audit;
pub mod batch;
pub mod charge;
pub mod clock;
pub mod connector;
pub mod console;
pub mod error;
pub mod import;
pub mod limits;
pub mod money;
pub mod store;
pub mod subscription;
pub mod text;
pub mod token;

pub use batch::{ChargeChange, ItemError, ItemErrorCode, ItemInput, ItemRequest, Method, Verdict};
pub use charge::{Charge, ChargeField, ChargeStatus, StatusGroup};
pub use clock::{Date, Timestamp};
pub use error::{StoreError, StoreResult};
pub use money::{Currency, Money};
pub use store::{AdminStore, Database, Store};
pub use text::{ChargeNumber, CustomerId, OperatorCode, ReferenceNumber, Username};
