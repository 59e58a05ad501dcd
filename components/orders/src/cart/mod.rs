//! The cart: what a user means to buy, with the name and unit price each
//! product had when it was added. Those are what the user is shown; checkout
//! prices the order from the catalog again, so a stale cart never sets a
//! price.
use serde::{Deserialize, Serialize};
use shop_shared::events::OrderLine;

pub mod handlers;
mod requests;
pub mod store;

/// Distinct products one cart may hold: bounds the stored document and the
/// work a checkout does per line.
pub const MAX_LINES: usize = 50;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cart {
    pub items: Vec<CartItem>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartItem {
    pub sku: String,
    pub name: String,
    pub unit_price_cents: i64,
    pub quantity: u32,
}

/// What [`Cart::put`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    /// A new line.
    Added,
    /// The line for that SKU was there and now has the new quantity.
    Replaced,
    /// Refused: the cart already holds [`MAX_LINES`] other products.
    Full,
}

impl Cart {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Puts `item` in the cart. A SKU has one line: putting it again sets
    /// that line's quantity (and refreshes its name and price) instead of
    /// adding to it, so a retried request cannot double a quantity.
    pub fn put(&mut self, item: CartItem) -> Put {
        if let Some(line) = self.items.iter_mut().find(|line| line.sku == item.sku) {
            *line = item;
            return Put::Replaced;
        }
        if self.items.len() >= MAX_LINES {
            return Put::Full;
        }
        self.items.push(item);
        Put::Added
    }

    /// Sets the quantity of the line for `sku`; `false` if there is none.
    pub fn set_quantity(&mut self, sku: &str, quantity: u32) -> bool {
        match self.items.iter_mut().find(|line| line.sku == sku) {
            Some(line) => {
                line.quantity = quantity;
                true
            }
            None => false,
        }
    }

    /// Removes the line for `sku`; `false` if there is none.
    pub fn remove(&mut self, sku: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|line| line.sku != sku);
        self.items.len() != before
    }

    /// Takes what an order bought out of the cart. Only those quantities go:
    /// an order may be confirmed long after checkout began (a resumed saga),
    /// and whatever the user added since stays in the cart.
    pub fn remove_ordered(&mut self, ordered: &[OrderLine]) {
        for bought in ordered {
            if let Some(line) = self.items.iter_mut().find(|line| line.sku == bought.sku) {
                line.quantity = line.quantity.saturating_sub(bought.quantity);
            }
        }
        self.items.retain(|line| line.quantity > 0);
    }

    /// The cart as the API shows it.
    pub fn view(&self) -> CartView {
        let items: Vec<ItemView> = self
            .items
            .iter()
            .map(|line| ItemView {
                sku: line.sku.clone(),
                name: line.name.clone(),
                unit_price_cents: line.unit_price_cents,
                quantity: line.quantity,
                line_total_cents: line.unit_price_cents.saturating_mul(line.quantity.into()),
            })
            .collect();
        CartView {
            total_cents: items.iter().map(|item| item.line_total_cents).fold(0, i64::saturating_add),
            item_count: items.iter().map(|item| item.quantity).sum(),
            items,
        }
    }
}

/// `GET /api/cart`: the lines with their totals, as of the prices they were
/// added at.
#[derive(Debug, Serialize)]
pub struct CartView {
    pub items: Vec<ItemView>,
    pub total_cents: i64,
    /// Units across all lines.
    pub item_count: u32,
}

#[derive(Debug, Serialize)]
pub struct ItemView {
    pub sku: String,
    pub name: String,
    pub unit_price_cents: i64,
    pub quantity: u32,
    pub line_total_cents: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(sku: &str, quantity: u32) -> CartItem {
        CartItem { sku: sku.into(), name: format!("{sku} name"), unit_price_cents: 250, quantity }
    }

    #[test]
    fn putting_a_sku_again_sets_its_quantity() {
        let mut cart = Cart::default();
        assert_eq!(cart.put(item("A", 2)), Put::Added);
        assert_eq!(cart.put(item("A", 5)), Put::Replaced);
        assert_eq!(cart.items, [item("A", 5)]);
    }

    #[test]
    fn a_full_cart_refuses_new_products_but_not_known_ones() {
        let mut cart = Cart::default();
        for i in 0..MAX_LINES {
            assert_eq!(cart.put(item(&format!("S{i}"), 1)), Put::Added);
        }
        assert_eq!(cart.put(item("NEW", 1)), Put::Full);
        assert_eq!(cart.put(item("S0", 3)), Put::Replaced);
    }

    #[test]
    fn removing_an_order_keeps_what_was_added_since() {
        let mut cart = Cart { items: vec![item("A", 3), item("B", 1), item("C", 4)] };
        let ordered =
            |sku: &str, quantity| OrderLine { sku: sku.into(), name: String::new(), quantity, unit_price_cents: 1 };
        cart.remove_ordered(&[ordered("A", 2), ordered("B", 1), ordered("Z", 1)]);
        assert_eq!(cart.items, [item("A", 1), item("C", 4)]);
    }

    #[test]
    fn the_view_totals_lines_and_units() {
        let cart = Cart { items: vec![item("A", 3), item("B", 2)] };
        let view = cart.view();
        assert_eq!(view.items[0].line_total_cents, 750);
        assert_eq!(view.total_cents, 1250);
        assert_eq!(view.item_count, 5);
    }
}
