//! The database this service owns (named by its `database_url` variable:
//! `sqlite:orders` embedded, a Postgres database in production) and its
//! schema.
use shop_shared::api::ApiError;
use shop_shared::db::Db;

/// Append-only: number N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: &[&str] = &[
    // Orders, with what their saga needs to run: `charge_request` is the
    // exact body of the charge (card included) until payments has answered
    // it for good, then it is erased; `lease_until_ms` is how long the run
    // that last touched a PENDING order may still be working on it.
    "CREATE TABLE orders (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        status TEXT NOT NULL,
        currency TEXT NOT NULL,
        total_cents BIGINT NOT NULL,
        address_id TEXT,
        idempotency_key TEXT,
        payment_id TEXT,
        cancel_reason TEXT,
        refunded INTEGER NOT NULL DEFAULT 0,
        charge_request TEXT,
        lease_until_ms BIGINT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX orders_by_idempotency_key ON orders (user_id, idempotency_key);
    CREATE INDEX orders_by_user ON orders (user_id, created_at_ms);
    CREATE INDEX orders_by_lease ON orders (status, lease_until_ms);
    CREATE TABLE order_lines (
        order_id TEXT NOT NULL REFERENCES orders (id),
        line_no BIGINT NOT NULL,
        sku TEXT NOT NULL,
        name TEXT NOT NULL,
        quantity BIGINT NOT NULL,
        unit_price_cents BIGINT NOT NULL,
        PRIMARY KEY (order_id, line_no)
    );
    CREATE TABLE order_history (
        order_id TEXT NOT NULL REFERENCES orders (id),
        status TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        note TEXT NOT NULL,
        PRIMARY KEY (order_id, status)
    );
    CREATE TABLE saga_steps (
        order_id TEXT NOT NULL REFERENCES orders (id),
        step TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT,
        attempts BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        PRIMARY KEY (order_id, step)
    );
    CREATE TABLE outbox (
        event_id TEXT PRIMARY KEY,
        order_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        sent_at_ms BIGINT,
        attempts BIGINT NOT NULL DEFAULT 0,
        last_error TEXT
    );
    CREATE INDEX outbox_pending ON outbox (sent_at_ms, created_at_ms);
    CREATE TABLE outbox_relay (
        name TEXT PRIMARY KEY,
        holder TEXT,
        locked_until_ms BIGINT NOT NULL
    );
    INSERT INTO outbox_relay (name, holder, locked_until_ms) VALUES ('relay', NULL, 0)",
    // The outbox's pending rows, indexed apart from those sent, and every
    // row by its order. On Postgres a row marked sent leaves its entry in
    // the pending index until the table is vacuumed (by default once a
    // fifth of it is dead), and the relay after each change, a bitmap scan
    // (which never marks entries dead), visited every such row in the
    // table: after 25 s of the mix at 16 clients, 3,231 entries and 235
    // pages for one row pending, about 0.9 ms of the server a checkout, and
    // more the longer the shop ran. Now a relay finds its own orders' rows
    // by order (a few entries each) and the stale ones by an index scan of
    // the pending rows, which marks the dead entries it passes so that the
    // scans after it skip them without visiting the table.
    "DROP INDEX outbox_pending;
    CREATE INDEX outbox_unsent ON outbox (created_at_ms) WHERE sent_at_ms IS NULL;
    CREATE INDEX outbox_by_order ON outbox (order_id, seq)",
];

/// Opens the database `database_url` names for this build's schema
/// (`Db::for_service`: migrated first on SQLite, checked by the first
/// statement on Postgres).
pub fn open() -> Result<Db, ApiError> {
    Ok(Db::for_service(MIGRATIONS)?)
}
