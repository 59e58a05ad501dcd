//! Who is asking, and which payments they may see or refund.
//!
//! The gateway authenticates customers and passes `x-user-id` /
//! `x-user-role` on; services trust those headers (nobody else can reach
//! them). A request without `x-user-id` comes from another service (the
//! orders saga's own steps) and may see every payment.
use shop_shared::api::{USER_ID, USER_ROLE};
use spin_sdk::http::Request;

use crate::model::Payment;

pub struct Caller {
    user_id: Option<String>,
    admin: bool,
}

impl Caller {
    pub fn of(req: &Request) -> Caller {
        let header = |name| req.header(name).and_then(|v| v.as_str()).filter(|v| !v.is_empty()).map(str::to_string);
        Caller { user_id: header(USER_ID), admin: header(USER_ROLE).as_deref() == Some("admin") }
    }

    /// The user a new payment belongs to.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// Customers see their own payments only; admins and services see all.
    pub fn may_see(&self, payment: &Payment) -> bool {
        match &self.user_id {
            Some(user) if !self.admin => payment.user_id.as_ref() == Some(user),
            _ => true,
        }
    }
}
