//! The HTTP API: `GET /api/notifications?limit=N` lists the caller's
//! messages (the gateway's `x-user-id`), newest first. Unknown paths are
//! `404`, other methods `405`, both in the shop's JSON error shape.
use serde::Serialize;
use shop_shared::api::{ApiError, FieldError, USER_ID, json};
use spin_sdk::http::{Method, Request, Response};

use crate::store::{self, Notification};

/// How many messages a page holds unless `limit` says otherwise, and at most.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

pub fn handle(req: &Request) -> Result<Response, ApiError> {
    match req.path().trim_end_matches('/') {
        "/api/notifications" if *req.method() == Method::Get => list(req),
        "/api/notifications" => {
            let mut response = ApiError::new(405, "method_not_allowed", "this path only accepts GET").into_response();
            response.set_header("allow", "GET");
            Ok(response)
        }
        path => Err(ApiError::not_found(format!("no route for {path}"))),
    }
}

#[derive(Serialize)]
struct NotificationList {
    items: Vec<Notification>,
}

fn list(req: &Request) -> Result<Response, ApiError> {
    let user_id = req.header(USER_ID).and_then(|v| v.as_str()).filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::unauthorized("x-user-id is required: notifications are listed for a signed-in user")
    })?;
    let limit = limit(req.query())?;
    let db = store::open()?;
    Ok(json(200, &NotificationList { items: store::of_user(&db, user_id, limit)? }))
}

fn limit(query: &str) -> Result<i64, ApiError> {
    let Some((_, value)) = form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "limit") else {
        return Ok(DEFAULT_LIMIT);
    };
    match value.parse::<i64>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(vec![FieldError {
            field: "limit".into(),
            message: format!("must be an integer from 1 to {MAX_LIMIT}"),
        }])),
    }
}
