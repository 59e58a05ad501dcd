//! An order as the API shows it, and the words for where it stands.
use serde::Serialize;
use shop_shared::db::DbError;
use shop_shared::events::OrderLine;

/// The one currency the shop sells in.
pub const CURRENCY: &str = "USD";

/// Where an order stands. PENDING while its saga runs; CONFIRMED and
/// CANCELLED are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Pending,
    Confirmed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Confirmed => "CONFIRMED",
            Status::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Result<Self, DbError> {
        match text {
            "PENDING" => Ok(Status::Pending),
            "CONFIRMED" => Ok(Status::Confirmed),
            "CANCELLED" => Ok(Status::Cancelled),
            other => Err(DbError::Column(format!("status {other:?}"))),
        }
    }
}

/// Why an order was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// Some line could not be had (before or after payment).
    OutOfStock,
    /// The payment did not go through; nothing was charged.
    PaymentDeclined,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::OutOfStock => "out_of_stock",
            CancelReason::PaymentDeclined => "payment_declined",
        }
    }

    pub fn parse(text: &str) -> Result<Self, DbError> {
        match text {
            "out_of_stock" => Ok(CancelReason::OutOfStock),
            "payment_declined" => Ok(CancelReason::PaymentDeclined),
            other => Err(DbError::Column(format!("cancel_reason {other:?}"))),
        }
    }
}

/// `GET /api/orders/{id}`.
#[derive(Clone, Debug, Serialize)]
pub struct Order {
    pub id: String,
    pub user_id: String,
    pub status: Status,
    pub lines: Vec<OrderLine>,
    pub total_cents: i64,
    pub currency: String,
    pub payment_id: Option<String>,
    pub address_id: Option<String>,
    /// Set when CANCELLED.
    pub cancel_reason: Option<CancelReason>,
    /// Whether a payment was taken and given back (CANCELLED after payment).
    pub refunded: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Every status the order has had, oldest first.
    pub history: Vec<HistoryEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub status: Status,
    pub at_ms: i64,
    pub note: String,
}

/// The total of `lines`, or `None` if it does not fit in an `i64`.
pub fn total_cents(lines: &[OrderLine]) -> Option<i64> {
    lines.iter().try_fold(0i64, |total, line| {
        line.unit_price_cents.checked_mul(line.quantity.into()).and_then(|cents| total.checked_add(cents))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(quantity: u32, unit_price_cents: i64) -> OrderLine {
        OrderLine { sku: "S".into(), name: "n".into(), quantity, unit_price_cents }
    }

    #[test]
    fn totals_sum_lines_and_refuse_overflow() {
        assert_eq!(total_cents(&[line(2, 150), line(1, 99)]), Some(399));
        assert_eq!(total_cents(&[]), Some(0));
        assert_eq!(total_cents(&[line(2, i64::MAX)]), None);
    }

    #[test]
    fn statuses_are_upper_case_on_the_wire() {
        assert_eq!(serde_json::to_value(Status::Confirmed).unwrap(), "CONFIRMED");
        assert_eq!(Status::parse(Status::Cancelled.as_str()).unwrap(), Status::Cancelled);
        assert_eq!(serde_json::to_value(CancelReason::OutOfStock).unwrap(), "out_of_stock");
    }
}
