//! The catalog in SQL: products with their stock, search, categories, and
//! the admin's writes.
use serde::Serialize;
use shop_shared::api::ApiError;
use shop_shared::db::{Bindings, Db, DbError, Row};

use crate::database::now_ms;
use crate::product::{Product, ProductDraft};
use crate::search::{SearchQuery, Sort};

/// One page of search results.
#[derive(Debug, Serialize)]
pub struct Page {
    pub items: Vec<Product>,
    pub page: i64,
    pub per_page: i64,
    /// Products matching in all, on every page.
    pub total: i64,
}

#[derive(Debug, Serialize)]
pub struct Category {
    pub name: String,
    /// Products in it.
    pub count: i64,
}

/// A product row with its stock (0 when the SKU has no stock row): the
/// columns and the tables they come from.
const PRODUCT_COLUMNS: &str =
    "p.id, p.sku, p.name, p.description, p.category, p.price_cents, COALESCE(s.quantity, 0) AS stock";
const PRODUCT_TABLES: &str = "products p LEFT JOIN stock s ON s.sku = p.sku";

/// `SELECT` of product rows, with `more` columns after the product's.
fn select_product_and(more: &[&str]) -> String {
    let more: String = more.iter().map(|column| format!(", {column}")).collect();
    format!("SELECT {PRODUCT_COLUMNS}{more} FROM {PRODUCT_TABLES}")
}

fn product(row: Row) -> Result<Product, DbError> {
    Ok(Product {
        id: row.text("id")?,
        sku: row.text("sku")?,
        name: row.text("name")?,
        description: row.text("description")?,
        category: row.text("category")?,
        price_cents: row.int("price_cents")?,
        stock: row.int("stock")?,
    })
}

pub fn get(db: &Db, id: &str) -> Result<Option<Product>, DbError> {
    let rows = db.query(&format!("{} WHERE p.id = $1", select_product_and(&[])), &[id.into()])?;
    rows.first().map(product).transpose()
}

fn get_by_sku(db: &Db, sku: &str) -> Result<Option<Product>, DbError> {
    let rows = db.query(&format!("{} WHERE p.sku = $1", select_product_and(&[])), &[sku.into()])?;
    rows.first().map(product).transpose()
}

/// Every category with how many products it has, by name.
pub fn categories(db: &Db) -> Result<Vec<Category>, DbError> {
    let rows = db.query("SELECT category, COUNT(*) AS n FROM products GROUP BY category ORDER BY category", &[])?;
    rows.iter().map(|row| Ok(Category { name: row.text("category")?, count: row.int("n")? })).collect()
}

/// The page of products `query` asks for.
pub fn search(db: &Db, query: &SearchQuery) -> Result<Page, DbError> {
    let mut sql = Bindings::default();
    let filter = filter(query, &mut sql);
    let filter_params = sql.params.len();
    let order = match query.sort {
        Sort::Relevance if !query.words.is_empty() => {
            format!("{} DESC, LOWER(p.name), p.id", relevance(query, &mut sql))
        }
        Sort::Relevance | Sort::Name => "LOWER(p.name), p.id".to_string(),
        Sort::Price => "p.price_cents, p.id".to_string(),
        Sort::PriceDescending => "p.price_cents DESC, p.id".to_string(),
    };
    let limit = sql.bind(query.per_page);
    let offset = sql.bind(query.offset());
    // The page and the number of matches in one query (the window counts
    // before LIMIT applies): one round trip to the database, not two.
    let select = select_product_and(&["COUNT(*) OVER () AS total"]);
    let rows = db.query(&format!("{select} {filter} ORDER BY {order} LIMIT {limit} OFFSET {offset}"), &sql.params)?;
    let total = match rows.first() {
        Some(row) => row.int("total")?,
        // No row to carry the count: nothing matches, or the page is past
        // the last one and the count takes a query of its own.
        None if query.offset() == 0 => 0,
        None => {
            sql.params.truncate(filter_params);
            let total = db.query(&format!("SELECT COUNT(*) AS n FROM products p {filter}"), &sql.params)?;
            total.first().map_or(Ok(0), |row| row.int("n"))?
        }
    };
    let items = rows.iter().map(product).collect::<Result<_, _>>()?;
    Ok(Page { items, page: query.page, per_page: query.per_page, total })
}

/// The WHERE clause of a search (empty when nothing is filtered): every
/// word in the name or the description, in the category, within the price
/// range, among the SKUs listed.
fn filter(query: &SearchQuery, sql: &mut Bindings) -> String {
    let mut conditions = Vec::new();
    for word in &query.words {
        let pattern = sql.bind(contains(word));
        conditions.push(format!(
            "(LOWER(p.name) LIKE {pattern} ESCAPE '!' OR LOWER(p.description) LIKE {pattern} ESCAPE '!')"
        ));
    }
    if let Some(category) = &query.category {
        conditions.push(format!("p.category = {}", sql.bind(category)));
    }
    if let Some(min) = query.min_price_cents {
        conditions.push(format!("p.price_cents >= {}", sql.bind(min)));
    }
    if let Some(max) = query.max_price_cents {
        conditions.push(format!("p.price_cents <= {}", sql.bind(max)));
    }
    if !query.skus.is_empty() {
        conditions.push(format!("p.sku IN ({})", sql.list(&query.skus)));
    }
    if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) }
}

/// How well a product matches the search text, as an SQL expression: a
/// name starting with the whole text first, then each word found in the
/// name (3) or the description (1). Every product that passed the filter
/// has each word somewhere, so this ranks within the matches.
fn relevance(query: &SearchQuery, sql: &mut Bindings) -> String {
    let phrase = query.phrase.as_deref().unwrap_or_default();
    let starts = sql.bind(format!("{}%", escape_like(phrase)));
    let mut score = vec![format!("CASE WHEN LOWER(p.name) LIKE {starts} ESCAPE '!' THEN 10 ELSE 0 END")];
    for word in &query.words {
        let pattern = sql.bind(contains(word));
        score.push(format!("CASE WHEN LOWER(p.name) LIKE {pattern} ESCAPE '!' THEN 3 ELSE 0 END"));
        score.push(format!("CASE WHEN LOWER(p.description) LIKE {pattern} ESCAPE '!' THEN 1 ELSE 0 END"));
    }
    format!("({})", score.join(" + "))
}

/// A LIKE pattern matching `text` anywhere.
fn contains(text: &str) -> String {
    format!("%{}%", escape_like(text))
}

/// Makes `%` and `_` in user text match themselves (with `ESCAPE '!'`).
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '!' | '%' | '_') {
            escaped.push('!');
        }
        escaped.push(c);
    }
    escaped
}

/// Adds a product and its stock. A SKU already in the catalog is a 409
/// naming the product that has it, so a client retrying a create learns
/// where its product is.
pub fn create(db: &Db, id: &str, draft: &ProductDraft) -> Result<Product, ApiError> {
    let now = now_ms();
    let created = db.transaction(|db| {
        db.execute(
            "INSERT INTO products (id, sku, name, description, category, price_cents, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            &[
                id.into(),
                (&draft.sku).into(),
                (&draft.name).into(),
                (&draft.description).into(),
                (&draft.category).into(),
                draft.price_cents.into(),
                now.into(),
            ],
        )?;
        db.execute(
            "INSERT INTO stock (sku, quantity) VALUES ($1, $2)",
            &[(&draft.sku).into(), draft.stock.unwrap_or(0).into()],
        )?;
        Ok::<_, DbError>(())
    });
    match created {
        Ok(()) => {}
        Err(DbError::Duplicate(_)) => {
            let holder = get_by_sku(db, &draft.sku)?.map_or_else(String::new, |p| format!(" ({})", p.id));
            return Err(ApiError::conflict(format!("a product with SKU {} already exists{holder}", draft.sku)));
        }
        Err(e) => return Err(e.into()),
    }
    get(db, id)?.ok_or_else(|| ApiError::internal("the product just created is gone"))
}

/// Replaces product `id`'s fields (and its stock, if the draft has one);
/// `None` if there is no such product.
pub fn update(db: &Db, id: &str, draft: &ProductDraft) -> Result<Option<Product>, DbError> {
    let updated = db.transaction(|db| {
        let changed = db.execute(
            "UPDATE products SET name = $2, description = $3, category = $4, price_cents = $5, updated_at_ms = $6 \
             WHERE id = $1",
            &[
                id.into(),
                (&draft.name).into(),
                (&draft.description).into(),
                (&draft.category).into(),
                draft.price_cents.into(),
                now_ms().into(),
            ],
        )?;
        if changed == 1
            && let Some(stock) = draft.stock
        {
            db.execute("UPDATE stock SET quantity = $2 WHERE sku = $1", &[(&draft.sku).into(), stock.into()])?;
        }
        Ok::<_, DbError>(changed == 1)
    })?;
    if updated { Ok(get(db, id)?) } else { Ok(None) }
}

/// Removes product `id` and its stock; `false` if there was none.
/// Reservations already made for it stay as they are.
pub fn delete(db: &Db, id: &str) -> Result<bool, DbError> {
    db.transaction(|db| {
        let rows = db.query("DELETE FROM products WHERE id = $1 RETURNING sku", &[id.into()])?;
        let Some(row) = rows.first() else { return Ok(false) };
        db.execute("DELETE FROM stock WHERE sku = $1", &[row.text("sku")?.into()])?;
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use shop_shared::db::Param;

    use super::*;

    #[test]
    fn like_wildcards_in_user_text_match_themselves() {
        assert_eq!(contains("50%_off!"), "%50!%!_off!!%");
    }

    #[test]
    fn a_search_binds_every_value() {
        let query = SearchQuery::parse("q=french+press&category=home-kitchen&min_price_cents=100").unwrap();
        let mut sql = Bindings::default();
        assert_eq!(
            filter(&query, &mut sql),
            "WHERE (LOWER(p.name) LIKE $1 ESCAPE '!' OR LOWER(p.description) LIKE $1 ESCAPE '!') \
             AND (LOWER(p.name) LIKE $2 ESCAPE '!' OR LOWER(p.description) LIKE $2 ESCAPE '!') \
             AND p.category = $3 AND p.price_cents >= $4"
        );
        assert_eq!(sql.params[..2], [Param::Text("%french%".into()), Param::Text("%press%".into())]);
        assert!(relevance(&query, &mut sql).starts_with("(CASE WHEN LOWER(p.name) LIKE $5 ESCAPE '!' THEN 10"));
        assert_eq!(sql.params[4], Param::Text("french press%".into()));
        assert_eq!(filter(&SearchQuery::parse("").unwrap(), &mut sql), "");
    }
}
