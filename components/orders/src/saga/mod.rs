//! The checkout saga: how a PENDING order becomes CONFIRMED or CANCELLED
//! across products and payments, neither of which this service controls.
//!
//! ```text
//! check stock ─ short ──────────────────────────────────────────▶ CANCELLED (out of stock)
//!     │ in stock
//! charge ─ declined ────────────────────────────────────────────▶ CANCELLED (declined)
//!     │ captured
//! sell ─ short ─▶ refund ─▶ release ────────────────────────────▶ CANCELLED (out of stock, refunded)
//!     │ sold (reserved and committed)
//!     ▼
//! CONFIRMED
//! ```
//!
//! Selling is one call to products that reserves and commits at once: once
//! the payment is captured nothing stands between the two, so one call,
//! one transaction there and one journal write here do what two did. The
//! journal keeps the two facts (`reserve` and `commit`), so a saga whose
//! journal has a reservation without its commit (written by an older build,
//! or against a products that has no `sell` and answered it 404) commits
//! as a step:
//!
//! ```text
//! reserve ─ short ─▶ refund ─▶ release ──────────────────────────▶ CANCELLED
//!     │ reserved
//! commit ─ no reservation ─▶ refund ─▶ release ──────────────────▶ CANCELLED (out of stock, refunded)
//!     │ committed
//!     ▼
//! CONFIRMED
//! ```
//!
//! The stock check is made by the checkout itself, with its pricing (one
//! call to products), and journaled with the order it places; a saga whose
//! journal lacks it (an order placed by an older build) makes it as a step.
//!
//! What each step learned is a [`Fact`], written to the saga's journal
//! (`saga_steps`) as soon as it is known: with the saga's end, or while the
//! next step's call is in flight (a step may so be done before the journal
//! holds the one before it; a resume then does both again). Where a saga stands is nothing but
//! its facts ([`Progress`]), and what to do next is a pure function of them
//! ([`Progress::next`]); so a saga stopped anywhere (a crash, a deadline, a
//! service down) resumes by reading its journal and carrying on. A step that
//! got no definitive answer is not a fact: it is done again, which is safe
//! because every step is idempotent on the other service's side (per order
//! id for stock, per Idempotency-Key for money).
use crate::clients::payments::Charge;
use crate::clients::products::{Commit, Shortage, Stock};
use crate::orders::model::CancelReason;

pub mod journal;
pub mod runner;

/// A step of the saga, as named in the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    CheckStock,
    Charge,
    Reserve,
    Commit,
    Refund,
    Release,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::CheckStock => "check_stock",
            Step::Charge => "charge",
            Step::Reserve => "reserve",
            Step::Commit => "commit",
            Step::Refund => "refund",
            Step::Release => "release",
        }
    }

    pub fn parse(text: &str) -> Option<Step> {
        [Step::CheckStock, Step::Charge, Step::Reserve, Step::Commit, Step::Refund, Step::Release]
            .into_iter()
            .find(|step| step.as_str() == text)
    }
}

/// What a step found out, for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fact {
    Stock(Stock),
    Payment(Charge),
    Reservation(Stock),
    Commit(Commit),
    /// The payment was refunded (the refund's id).
    Refunded(String),
    Released,
}

impl Fact {
    pub fn step(&self) -> Step {
        match self {
            Fact::Stock(_) => Step::CheckStock,
            Fact::Payment(_) => Step::Charge,
            Fact::Reservation(_) => Step::Reserve,
            Fact::Commit(_) => Step::Commit,
            Fact::Refunded(_) => Step::Refund,
            Fact::Released => Step::Release,
        }
    }

    /// The journal's form: an outcome word and its detail.
    pub fn outcome(&self) -> (&'static str, Option<String>) {
        match self {
            Fact::Stock(stock) | Fact::Reservation(stock) => match stock {
                Stock::Available => ("available", None),
                Stock::Short(short) => ("short", serde_json::to_string(short).ok()),
            },
            Fact::Payment(Charge::Captured { payment_id }) => ("captured", Some(payment_id.clone())),
            Fact::Payment(Charge::Declined { code }) => ("declined", Some(code.clone())),
            Fact::Commit(Commit::Committed) => ("committed", None),
            Fact::Commit(Commit::NoReservation) => ("no_reservation", None),
            Fact::Refunded(refund_id) => ("refunded", Some(refund_id.clone())),
            Fact::Released => ("released", None),
        }
    }

    /// Reads a journal entry back; `None` for an attempt that learned
    /// nothing (outcome `unknown`) or a word this version does not know.
    pub fn parse(step: Step, outcome: &str, detail: Option<String>) -> Option<Fact> {
        let stock = |detail: Option<String>| match outcome {
            "available" => Some(Stock::Available),
            "short" => {
                let short: Vec<Shortage> = detail.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default();
                Some(Stock::Short(short))
            }
            _ => None,
        };
        match (step, outcome) {
            (Step::CheckStock, _) => stock(detail).map(Fact::Stock),
            (Step::Reserve, _) => stock(detail).map(Fact::Reservation),
            (Step::Charge, "captured") => Some(Fact::Payment(Charge::Captured { payment_id: detail? })),
            (Step::Charge, "declined") => Some(Fact::Payment(Charge::Declined { code: detail.unwrap_or_default() })),
            (Step::Commit, "committed") => Some(Fact::Commit(Commit::Committed)),
            (Step::Commit, "no_reservation") => Some(Fact::Commit(Commit::NoReservation)),
            (Step::Refund, "refunded") => Some(Fact::Refunded(detail.unwrap_or_default())),
            (Step::Release, "released") => Some(Fact::Released),
            _ => None,
        }
    }
}

/// Everything a saga knows, one slot per step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub stock: Option<Stock>,
    pub payment: Option<Charge>,
    pub reservation: Option<Stock>,
    pub commit: Option<Commit>,
    pub refund: Option<String>,
    pub released: bool,
}

/// A remote call the saga makes next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    CheckStock,
    Charge,
    /// Reserve and commit in one call (or reserve alone, against a products
    /// that cannot sell); journaled as the `reserve` step.
    Sell,
    /// Commit what an earlier reservation holds.
    Commit,
    Refund { payment_id: String },
    Release,
}

impl Action {
    pub fn step(&self) -> Step {
        match self {
            Action::CheckStock => Step::CheckStock,
            Action::Charge => Step::Charge,
            Action::Sell => Step::Reserve,
            Action::Commit => Step::Commit,
            Action::Refund { .. } => Step::Refund,
            Action::Release => Step::Release,
        }
    }
}

/// How a cancelled order ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cancellation {
    pub reason: CancelReason,
    /// Whether a payment was taken and then refunded.
    pub refunded: bool,
    /// For the order's history.
    pub note: String,
}

/// What the saga does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Call(Action),
    Confirm { payment_id: String },
    Cancel(Cancellation),
}

impl Progress {
    pub fn learn(&mut self, fact: Fact) {
        match fact {
            Fact::Stock(stock) => self.stock = Some(stock),
            Fact::Payment(charge) => self.payment = Some(charge),
            Fact::Reservation(stock) => self.reservation = Some(stock),
            Fact::Commit(commit) => self.commit = Some(commit),
            Fact::Refunded(refund_id) => self.refund = Some(refund_id),
            Fact::Released => self.released = true,
        }
    }

    /// The next thing to do, given what is known (see the module diagram).
    pub fn next(&self) -> Next {
        let payment_id = match (&self.stock, &self.payment) {
            (None, _) => return Next::Call(Action::CheckStock),
            (Some(Stock::Short(short)), _) => {
                return cancel(CancelReason::OutOfStock, false, format!("out of stock: {}", describe(short)));
            }
            (Some(Stock::Available), None) => return Next::Call(Action::Charge),
            (Some(Stock::Available), Some(Charge::Declined { code })) => {
                return cancel(CancelReason::PaymentDeclined, false, format!("payment declined ({code})"));
            }
            (Some(Stock::Available), Some(Charge::Captured { payment_id })) => payment_id.clone(),
        };
        let failure = match (&self.reservation, &self.commit) {
            (None, _) => return Next::Call(Action::Sell),
            (Some(Stock::Available), None) => return Next::Call(Action::Commit),
            (Some(Stock::Available), Some(Commit::Committed)) => return Next::Confirm { payment_id },
            (Some(Stock::Available), Some(Commit::NoReservation)) => {
                "the stock reserved for it was gone before it could be sold".to_string()
            }
            (Some(Stock::Short(short)), _) => format!("out of stock after payment: {}", describe(short)),
        };
        if self.refund.is_none() {
            return Next::Call(Action::Refund { payment_id });
        }
        if !self.released {
            return Next::Call(Action::Release);
        }
        cancel(CancelReason::OutOfStock, true, format!("{failure}; payment {payment_id} refunded"))
    }
}

fn cancel(reason: CancelReason, refunded: bool, note: String) -> Next {
    Next::Cancel(Cancellation { reason, refunded, note })
}

/// `SKU-1 (2 requested, 0 in stock), ...`.
fn describe(short: &[Shortage]) -> String {
    if short.is_empty() {
        return "some items are no longer available".to_string();
    }
    short
        .iter()
        .map(|s| format!("{} ({} requested, {} in stock)", s.sku, s.requested, s.in_stock))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(facts: &[Fact]) -> Next {
        let mut progress = Progress::default();
        for fact in facts {
            progress.learn(fact.clone());
        }
        progress.next()
    }

    fn captured() -> Fact {
        Fact::Payment(Charge::Captured { payment_id: "pay_1".into() })
    }

    fn short() -> Stock {
        Stock::Short(vec![Shortage { sku: "A".into(), requested: 2, in_stock: 1 }])
    }

    #[test]
    fn the_happy_path_checks_charges_sells_then_confirms() {
        assert_eq!(after(&[]), Next::Call(Action::CheckStock));
        let mut facts = vec![Fact::Stock(Stock::Available)];
        assert_eq!(after(&facts), Next::Call(Action::Charge));
        facts.push(captured());
        assert_eq!(after(&facts), Next::Call(Action::Sell));
        // A sale is learned as both facts at once.
        facts.push(Fact::Reservation(Stock::Available));
        facts.push(Fact::Commit(Commit::Committed));
        assert_eq!(after(&facts), Next::Confirm { payment_id: "pay_1".into() });
    }

    #[test]
    fn a_reservation_journaled_without_its_commit_is_committed() {
        let facts = [Fact::Stock(Stock::Available), captured(), Fact::Reservation(Stock::Available)];
        assert_eq!(after(&facts), Next::Call(Action::Commit));
    }

    #[test]
    fn short_before_payment_cancels_without_charging() {
        let Next::Cancel(c) = after(&[Fact::Stock(short())]) else { panic!() };
        assert_eq!((c.reason, c.refunded), (CancelReason::OutOfStock, false));
        assert_eq!(c.note, "out of stock: A (2 requested, 1 in stock)");
    }

    #[test]
    fn a_decline_cancels_without_reserving() {
        let declined = Fact::Payment(Charge::Declined { code: "card_declined".into() });
        let Next::Cancel(c) = after(&[Fact::Stock(Stock::Available), declined]) else { panic!() };
        assert_eq!((c.reason, c.refunded), (CancelReason::PaymentDeclined, false));
    }

    #[test]
    fn short_after_payment_refunds_then_releases_then_cancels() {
        let mut facts = vec![Fact::Stock(Stock::Available), captured(), Fact::Reservation(short())];
        assert_eq!(after(&facts), Next::Call(Action::Refund { payment_id: "pay_1".into() }));
        facts.push(Fact::Refunded("re_1".into()));
        assert_eq!(after(&facts), Next::Call(Action::Release));
        facts.push(Fact::Released);
        let Next::Cancel(c) = after(&facts) else { panic!() };
        assert_eq!((c.reason, c.refunded), (CancelReason::OutOfStock, true));
    }

    #[test]
    fn a_lost_reservation_is_compensated_too() {
        let facts = [
            Fact::Stock(Stock::Available),
            captured(),
            Fact::Reservation(Stock::Available),
            Fact::Commit(Commit::NoReservation),
        ];
        assert_eq!(after(&facts), Next::Call(Action::Refund { payment_id: "pay_1".into() }));
    }

    #[test]
    fn facts_round_trip_through_the_journal() {
        let facts = [
            Fact::Stock(short()),
            Fact::Reservation(Stock::Available),
            captured(),
            Fact::Payment(Charge::Declined { code: "card_declined".into() }),
            Fact::Commit(Commit::NoReservation),
            Fact::Refunded("re_1".into()),
            Fact::Released,
        ];
        for fact in facts {
            let (outcome, detail) = fact.outcome();
            assert_eq!(Fact::parse(fact.step(), outcome, detail), Some(fact.clone()));
            assert_eq!(Step::parse(fact.step().as_str()), Some(fact.step()));
        }
        assert_eq!(Fact::parse(Step::Charge, "unknown", Some("timeout".into())), None);
    }
}
