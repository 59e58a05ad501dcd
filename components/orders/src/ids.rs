//! Identifiers this service mints. Random (UUID v4) rather than sequential,
//! so they reveal nothing about volume and never collide across instances;
//! the prefix tells a reader what kind of thing an id names.
use uuid::Uuid;

/// A new order id, `ord_<32 hex digits>`.
pub fn order_id() -> String {
    format!("ord_{}", Uuid::new_v4().simple())
}

/// A new event id, `evt_<32 hex digits>`: consumers deduplicate on it.
pub fn event_id() -> String {
    format!("evt_{}", Uuid::new_v4().simple())
}

/// A token naming one holder of a lock.
pub fn token() -> String {
    Uuid::new_v4().simple().to_string()
}
