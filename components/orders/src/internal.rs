//! The private routes other parts of the system call (an operator, a
//! scheduler): finishing stale sagas and relaying the outbox on demand.
use serde_json::json;
use shop_shared::api::{ApiError, json};
use spin_sdk::http::{Request, Response};

use crate::clients::Upstream;
use crate::clock::now_ms;
use crate::saga::{journal, runner};
use crate::{outbox, schema};

/// Stale sagas one call resumes: each may take seconds (a slow card), and
/// the call must end within the request deadline. `remaining` tells the
/// caller to call again.
const RESUME_BATCH: i64 = 20;

/// `POST /internal/sagas/resume`: finishes or compensates every saga left
/// PENDING by a run that died or gave up.
pub async fn resume_sagas(req: &Request) -> Result<Response, ApiError> {
    let db = schema::open()?;
    let resumed = runner::resume_stale(&db, &Upstream::for_request(req), i64::MAX, RESUME_BATCH).await?;
    let remaining = journal::stale(&db, now_ms(), i64::MAX, RESUME_BATCH)?.len();
    Ok(json(200, &json!({ "resumed": resumed, "remaining": remaining })))
}

/// `POST /internal/outbox/relay`: publishes every pending event.
pub fn relay_outbox() -> Result<Response, ApiError> {
    let db = schema::open()?;
    let relayed = outbox::relay(&db)?;
    Ok(json(200, &relayed))
}
