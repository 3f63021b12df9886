//! Where the API's methods live. A leaf that every handler file may import without
//! importing the module that gathers them.

/// Where CRM.COM serves its Web API; existing integrations only change the host.
pub const BASE: &str = "/crmapi/rest/v2";

/// Where chargegate's own methods live, beside CRM.COM's.
pub const EXTENSIONS: &str = "/chargegate/v1";

/// Where the connector API lives.
pub const CONNECTOR: &str = "/chargegate/v1/connector";
