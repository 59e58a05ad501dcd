-- The catalog: what the shop sells. `sku` is a product's business key, the
-- one orders and inventory speak of, so it never changes.
CREATE TABLE products (
    id TEXT PRIMARY KEY,
    sku TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE INDEX products_by_category ON products (category);

CREATE INDEX products_by_price ON products (price_cents);

-- Units available per SKU: on hand minus those reserved for orders. The
-- CHECK is the last line of defence: stock can never go negative.
CREATE TABLE stock (
    sku TEXT PRIMARY KEY,
    quantity BIGINT NOT NULL CHECK (quantity >= 0)
);

-- One reservation per order: the first answer given for it (`granted`, and
-- `short_json` when refused) and where it stands now
-- (reserved, rejected, committed, released).
CREATE TABLE reservations (
    order_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    granted INTEGER NOT NULL,
    short_json TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- What a reservation asked for, one line per SKU.
CREATE TABLE reservation_lines (
    order_id TEXT NOT NULL REFERENCES reservations (order_id),
    sku TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku)
)
