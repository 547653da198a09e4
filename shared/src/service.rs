//! What every function reports about itself.

use serde::Serialize;

/// The four edgerag functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Auth,
    Ingest,
    Search,
    Respond,
}

/// The body of `GET /v1/<name>/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub service: Service,
    pub status: &'static str,
    pub version: &'static str,
}

impl Service {
    pub fn health(self) -> Health {
        Health {
            service: self,
            status: "ok",
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}
