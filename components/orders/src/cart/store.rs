//! Carts in the key-value store `carts`: one JSON document per user, keyed
//! by the user id. A cart is small and always read and written whole; two
//! concurrent writes to one user's cart are last-write-wins, which is what a
//! user editing one cart from two tabs expects.
use shop_shared::api::ApiError;
use spin_sdk::key_value::Store;

use super::Cart;

const STORE: &str = "carts";

pub struct CartStore {
    store: Store,
}

impl CartStore {
    pub fn open() -> Result<Self, ApiError> {
        let store = Store::open(STORE).map_err(|e| ApiError::internal(format!("opening the {STORE} store: {e}")))?;
        Ok(Self { store })
    }

    /// The user's cart; empty if they have none.
    pub fn load(&self, user_id: &str) -> Result<Cart, ApiError> {
        let cart =
            self.store.get_json::<Cart>(user_id).map_err(|e| ApiError::internal(format!("reading the cart: {e}")))?;
        Ok(cart.unwrap_or_default())
    }

    /// Stores the user's cart; an empty cart is deleted rather than kept.
    pub fn save(&self, user_id: &str, cart: &Cart) -> Result<(), ApiError> {
        let failed = |e: &dyn std::fmt::Display| ApiError::internal(format!("writing the cart: {e}"));
        if cart.is_empty() {
            self.store.delete(user_id).map_err(|e| failed(&e))
        } else {
            self.store.set_json(user_id, cart).map_err(|e| failed(&e))
        }
    }
}
