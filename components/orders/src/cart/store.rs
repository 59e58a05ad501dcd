//! Carts in the key-value store `carts`: one JSON document per user, keyed
//! by the user id, read and written whole.
//!
//! Every change is a compare-and-swap (`wasi:keyvalue/atomics`): it writes
//! only if the cart is still the one it read, and otherwise reads it again
//! and applies the change to what is there now. So a checkout taking its
//! order out of the cart never loses a line the user added meanwhile (from
//! another tab, or during the checkout itself), and an edit never brings
//! back lines a checkout took out. A plain read then write lost one or the
//! other whenever they crossed.
//!
//! A checkout reads the cart through a compare-and-swap handle it keeps
//! ([`HeldCart`]) and takes its order out with that handle when the order
//! is confirmed: one round trip to the store then instead of a read and a
//! write, and a conflict (the cart changed during the checkout) only makes
//! it read again.
//!
//! A cart emptied by a change is kept as an empty document: a
//! compare-and-swap can set a value, not delete one.
use shop_shared::api::ApiError;
use shop_shared::events::OrderLine;
use spin_sdk::wit::wasi::keyvalue::atomics::{self, Cas, CasError};
use spin_sdk::wit::wasi::keyvalue::store::{self, Bucket};

use super::Cart;

const STORE: &str = "carts";

/// Compare-and-swaps one change may lose to other writers of the same
/// cart before it gives up (each loss means someone else's write landed).
const MAX_CONFLICTS: usize = 16;

pub struct CartStore {
    bucket: Bucket,
}

/// A user's cart as a checkout read it, with the handle that writes it
/// back only if it is still that cart.
pub struct HeldCart {
    // Dropped before the bucket it was made from.
    cas: Cas,
    pub cart: Cart,
    store: CartStore,
}

impl CartStore {
    pub fn open() -> Result<Self, ApiError> {
        let bucket = store::open(STORE).map_err(|e| ApiError::internal(format!("opening the {STORE} store: {}", describe(&e))))?;
        Ok(Self { bucket })
    }

    /// The user's cart; empty if they have none.
    pub fn load(&self, user_id: &str) -> Result<Cart, ApiError> {
        let bytes = self.bucket.get(user_id).map_err(|e| read_failed(&e))?;
        decode(bytes)
    }

    /// The user's cart, held for a later [`HeldCart::take_out`].
    pub fn hold(self, user_id: &str) -> Result<HeldCart, ApiError> {
        let cas = Cas::new(&self.bucket, user_id).map_err(|e| read_failed(&e))?;
        let cart = decode(cas.current().map_err(|e| read_failed(&e))?)?;
        Ok(HeldCart { cas, cart, store: self })
    }

    /// Applies `change` to the user's cart and writes the result, again on
    /// the cart as it is now if someone else wrote it meanwhile. `change`
    /// may refuse (its `Err` is returned and nothing is written). Returns
    /// the cart as written and what `change` returned.
    pub fn change<T>(&self, user_id: &str, change: impl FnMut(&mut Cart) -> Result<T, ApiError>) -> Result<(Cart, T), ApiError> {
        let cas = Cas::new(&self.bucket, user_id).map_err(|e| read_failed(&e))?;
        swap_until_it_takes(cas, change)
    }
}

impl HeldCart {
    /// Takes what an order bought out of the cart (see
    /// [`Cart::remove_ordered`]): with the handle of the read if the cart
    /// has not changed since, else on the cart as it is now.
    pub fn take_out(self, ordered: &[OrderLine]) -> Result<(), ApiError> {
        let HeldCart { cas, store, .. } = self;
        let taken = swap_until_it_takes(cas, |cart| {
            cart.remove_ordered(ordered);
            Ok(())
        });
        drop(store);
        taken.map(drop)
    }
}

/// The compare-and-swap loop: `cas` holds the cart a change is applied to;
/// a swap that finds another value there hands back a handle on it.
fn swap_until_it_takes<T>(
    mut cas: Cas,
    mut change: impl FnMut(&mut Cart) -> Result<T, ApiError>,
) -> Result<(Cart, T), ApiError> {
    for _ in 0..=MAX_CONFLICTS {
        let mut cart = decode(cas.current().map_err(|e| read_failed(&e))?)?;
        let outcome = change(&mut cart)?;
        let bytes = serde_json::to_vec(&cart).map_err(|e| ApiError::internal(format!("encoding the cart: {e}")))?;
        match atomics::swap(cas, &bytes) {
            Ok(()) => return Ok((cart, outcome)),
            Err(CasError::CasFailed(now)) => cas = now,
            Err(CasError::StoreError(e)) => return Err(ApiError::internal(format!("writing the cart: {}", describe(&e)))),
        }
    }
    Err(ApiError::new(
        409,
        "cart_busy",
        format!("the cart changed {MAX_CONFLICTS} times while this change was applied to it; try again"),
    ))
}

fn decode(bytes: Option<Vec<u8>>) -> Result<Cart, ApiError> {
    match bytes {
        None => Ok(Cart::default()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| ApiError::internal(format!("the stored cart is unreadable: {e}"))),
    }
}

fn read_failed(e: &store::Error) -> ApiError {
    ApiError::internal(format!("reading the cart: {}", describe(e)))
}

fn describe(e: &store::Error) -> String {
    match e {
        store::Error::NoSuchStore => format!("the key-value store `{STORE}` does not exist"),
        store::Error::AccessDenied => format!("the key-value store `{STORE}` is not granted to orders"),
        store::Error::Other(detail) => detail.clone(),
    }
}
