//! One SQL interface over Spin's SQLite (`spin:sqlite@3.0.0`) and Postgres
//! (`spin:postgres@4.0.0`), so a service is written once and runs on its own
//! SQLite database in embedded mode and its own Postgres database in
//! production, chosen by its `database_url` variable:
//!
//! - `sqlite:<name>`: the database `<name>` the component is granted in
//!   spin.toml (`sqlite_databases`);
//! - `postgres://user@host:port/db`: a Postgres database the component's
//!   `allowed_outbound_hosts` grants.
//!
//! Services write portable SQL: `$1`-style placeholders (rewritten to `?1`
//! for SQLite), `BIGINT` for integers (money in cents, times in Unix ms),
//! `TEXT` for strings and ids, `INTEGER` 0/1 for booleans, and
//! `ON CONFLICT ... DO ...` / `RETURNING`, which both engines support.
use std::borrow::Cow;

use spin_sdk::{pg4, sqlite3};

mod schema;
use schema::Schema;

/// A parameter of a statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(v)
    }
}
impl From<u32> for Param {
    fn from(v: u32) -> Self {
        Param::Int(v.into())
    }
}
impl From<bool> for Param {
    fn from(v: bool) -> Self {
        Param::Int(v.into())
    }
}
impl From<f64> for Param {
    fn from(v: f64) -> Self {
        Param::Real(v)
    }
}
impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(v.to_string())
    }
}
impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(v)
    }
}
impl From<&String> for Param {
    fn from(v: &String) -> Self {
        Param::Text(v.clone())
    }
}
impl<T: Into<Param>> From<Option<T>> for Param {
    fn from(v: Option<T>) -> Self {
        v.map_or(Param::Null, Into::into)
    }
}

/// The parameters of a statement being built, numbered as bound: each
/// value gets the next `$n` placeholder, so a statement whose parameters
/// vary in number (a filter, an `IN` list, a multi-row `INSERT`) never
/// counts them by hand.
#[derive(Clone, Debug, Default)]
pub struct Bindings {
    pub params: Vec<Param>,
}

impl Bindings {
    /// Adds a parameter; returns its placeholder (`$3`).
    pub fn bind(&mut self, value: impl Into<Param>) -> String {
        self.params.push(value.into());
        format!("${}", self.params.len())
    }

    /// An `IN` list, `$3, $4, $5`: one placeholder per item, each bound.
    pub fn list<T: Into<Param>>(&mut self, items: impl IntoIterator<Item = T>) -> String {
        let placeholders: Vec<String> = items.into_iter().map(|item| self.bind(item)).collect();
        placeholders.join(", ")
    }

    /// A multi-row `VALUES` list, `(…), (…)`, so one statement (one round
    /// trip) writes any number of rows: `row` gives an item's placeholders,
    /// binding its values or reusing ones bound once for every row.
    pub fn rows<T>(&mut self, items: impl IntoIterator<Item = T>, mut row: impl FnMut(&mut Self, T) -> Vec<String>) -> String {
        let rows: Vec<String> = items.into_iter().map(|item| format!("({})", row(self, item).join(", "))).collect();
        rows.join(", ")
    }
}

/// Writes that go to the database together ([`Db::execute_all`]), each a
/// statement with its own parameters, numbered from `$1` as usual.
///
/// They must not depend on one another: on Postgres they are one statement,
/// whose parts all see the database as it was before it, so no write may
/// read or change a row another one writes (an order and its lines, its
/// history and its event are fine: each only inserts). Only the last
/// write's count is returned: a write whose outcome decides whether the
/// others should run is an [`Db::execute`] of its own, or the last one in
/// a transaction that rolls back when it did not take.
#[derive(Clone, Debug, Default)]
pub struct Writes {
    statements: Vec<(String, Vec<Param>)>,
}

impl Writes {
    pub fn push(&mut self, sql: impl Into<String>, params: Vec<Param>) {
        self.statements.push((sql.into(), params));
    }

    pub fn len(&self) -> usize {
        self.statements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }
}

/// Writes that each depend on the one before, committed together
/// ([`Db::commit_chain`]): every link runs only if the links before it
/// changed exactly the rows they expected, and the writes that follow the
/// chain only if all of it took. What ends a saga is one: its facts (as
/// many rows as facts), then its order's move out of PENDING (one row, or
/// another run ended it first), then the order's history and event.
///
/// On Postgres the chain is one statement: each link a data-modifying
/// `WITH` part returning a row per row it changed, a link after the first
/// conditioned on the count of the one before (so every link but the first
/// is an `UPDATE` or `DELETE` that ends with its `WHERE` clause), and each
/// following write an `INSERT INTO t (...) SELECT ...` with no `FROM` of
/// its own, given a `WHERE` on the last link's count. One round trip, where
/// `BEGIN`, a statement per write and `COMMIT` took four or more, each
/// waiting its turn on a busy machine. SQLite runs the same statements in
/// turn, in a transaction, and stops at the first link that did not take.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    links: Vec<(String, Vec<Param>, u64)>,
    then: Writes,
    /// All or nothing: see [`Chain::whole`].
    whole: bool,
}

/// What Postgres is made to fail with when a link of a whole chain did not
/// take (the text cast to an integer), and SQLite's transaction is rolled
/// back with.
const BROKEN_CHAIN: &str = "a link of the chain did not take";

impl Chain {
    /// A chain that writes all of itself or nothing: when a link does not
    /// take, what the links before it wrote is undone too. On Postgres the
    /// statement is made to fail (its answer is cast from a text that is
    /// no number), which undoes the whole statement; on SQLite the
    /// transaction is rolled back. For a fast path whose caller falls back
    /// to a slower one that sorts out why (a sale whose reservation exists
    /// already, or whose stock is short).
    pub fn whole() -> Chain {
        Chain { whole: true, ..Chain::default() }
    }

    /// Adds a link that must change exactly `expected` rows (at least one)
    /// for the rest of the chain to run.
    pub fn link(&mut self, sql: impl Into<String>, params: Vec<Param>, expected: u64) {
        assert!(expected > 0, "a link expects to change a row");
        self.links.push((sql.into(), params, expected));
    }

    /// The writes that run once every link took, to push to: each an
    /// `INSERT INTO t (...) SELECT ...` with no `FROM` or `WHERE`.
    pub fn then(&mut self) -> &mut Writes {
        &mut self.then
    }
}

/// A value read back.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database_url {0:?} is neither sqlite:<name> nor postgres://...")]
    BadUrl(String),
    #[error("the database_url variable is not set: {0}")]
    NoUrl(String),
    #[error("opening the database failed: {0}")]
    Open(String),
    /// The statement failed; the engine's message.
    #[error("{0}")]
    Query(String),
    /// A unique constraint refused the write (a duplicate).
    #[error("duplicate: {0}")]
    Duplicate(String),
    #[error("column {0:?} is missing or has another type")]
    Column(String),
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// An open database of either engine.
pub struct Db {
    engine: Engine,
    /// The schema this build of the service reads and writes, when it was
    /// opened for one ([`Db::for_service`]); see [`schema`] for when it is
    /// checked.
    schema: Option<Schema>,
}

enum Engine {
    Sqlite(sqlite3::Connection),
    Postgres(pg4::Connection),
}

/// Rows read back, with their column names.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// One row, read by column name.
pub struct Row<'a> {
    columns: &'a [String],
    cells: &'a [Cell],
}

impl Db {
    /// Opens the database the component's `database_url` variable names.
    pub fn from_variable() -> Result<Db> {
        let url = spin_sdk::variables::get("database_url").map_err(|e| DbError::NoUrl(e.to_string()))?;
        Db::open(&url)
    }

    pub fn open(url: &str) -> Result<Db> {
        if let Some(name) = url.strip_prefix("sqlite:") {
            let conn = sqlite3::Connection::open(name).map_err(|e| DbError::Open(format!("sqlite {name}: {e}")))?;
            Ok(Db { engine: Engine::Sqlite(conn), schema: None })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let conn = pg4::Connection::open(url).map_err(|e| DbError::Open(format!("postgres: {e}")))?;
            Ok(Db { engine: Engine::Postgres(conn), schema: None })
        } else {
            Err(DbError::BadUrl(url.to_string()))
        }
    }

    /// Runs a statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: &[Param]) -> Result<u64> {
        match &self.engine {
            Engine::Sqlite(conn) => {
                conn.execute(&sqlite_placeholders(sql), &sqlite_params(params)).map_err(sqlite_error)?;
                Ok(conn.changes())
            }
            Engine::Postgres(conn) => self.on_schema(sql, params, |sql, params| conn.execute(sql, params).map_err(pg_error)),
        }
    }

    /// Runs a query; returns its rows.
    pub fn query(&self, sql: &str, params: &[Param]) -> Result<Rows> {
        match &self.engine {
            Engine::Sqlite(conn) => {
                let result = conn.execute(&sqlite_placeholders(sql), &sqlite_params(params)).map_err(sqlite_error)?;
                let rows = result
                    .rows
                    .into_iter()
                    .map(|row| row.values.into_iter().map(sqlite_cell).collect())
                    .collect();
                Ok(Rows { columns: result.columns, rows })
            }
            Engine::Postgres(conn) => {
                let set = self.on_schema(sql, params, |sql, params| conn.query(sql, params).map_err(pg_error))?;
                let columns = set.columns.into_iter().map(|c| c.name).collect();
                let rows = set.rows.into_iter().map(|row| row.into_iter().map(pg_cell).collect()).collect();
                Ok(Rows { columns, rows })
            }
        }
    }

    /// Runs `writes`, in one round trip on Postgres: several statements
    /// are sent as one, `WITH w1 AS (first), ... last`, which Postgres runs
    /// whole or not at all (a failing part, a duplicate key say, fails the
    /// statement and writes nothing). A checkout's order, with its lines,
    /// history, event and journal, is so one round trip instead of five,
    /// each of which waits its turn on a busy machine. SQLite runs them one
    /// by one, in-process; call it inside a transaction there, as a group
    /// of writes should be anyway.
    ///
    /// Returns the rows the last write changed (`WITH`'s parts count for
    /// nothing), so the last may be the one whose outcome matters.
    pub fn execute_all(&self, writes: Writes) -> Result<u64> {
        match &self.engine {
            Engine::Postgres(conn) if writes.len() > 1 => {
                let (sql, params) = one_statement(&writes.statements);
                self.on_schema(&sql, &params, |sql, params| conn.execute(sql, params).map_err(pg_error))
            }
            _ => {
                let mut changed = 0;
                for (sql, params) in &writes.statements {
                    changed = self.execute(sql, params)?;
                }
                Ok(changed)
            }
        }
    }

    /// Runs `writes` as a transaction of their own: on Postgres the one
    /// statement of [`Self::execute_all`] (a statement is a transaction by
    /// itself, so neither `BEGIN` nor `COMMIT` costs a round trip), on
    /// SQLite each in turn between `BEGIN` and `COMMIT`.
    pub fn commit_all(&self, writes: Writes) -> Result<u64> {
        match &self.engine {
            Engine::Postgres(_) => self.execute_all(writes),
            Engine::Sqlite(_) => self.transaction(|db| db.execute_all(writes)),
        }
    }

    /// Runs `writes` as a transaction of their own, as [`Self::commit_all`],
    /// and returns the rows each changed, in order: for writes whose every
    /// outcome matters but decides nothing about the others. On Postgres
    /// the one statement is `WITH w1 AS (first RETURNING 1), ... SELECT
    /// (SELECT COUNT(*) FROM w1), ...` (so no write may have a `RETURNING`
    /// of its own).
    pub fn commit_each(&self, writes: Writes) -> Result<Vec<u64>> {
        match &self.engine {
            Engine::Postgres(conn) => {
                let (sql, params) = counted_statement(&writes.statements);
                let set = self.on_schema(&sql, &params, |sql, params| conn.query(sql, params).map_err(pg_error))?;
                let row = set.rows.into_iter().next().unwrap_or_default();
                let counts: Vec<u64> = row
                    .into_iter()
                    .map(|cell| match pg_cell(cell) {
                        Cell::Int(n) => Ok(n as u64),
                        other => Err(DbError::Query(format!("a write's count came back as {other:?}"))),
                    })
                    .collect::<Result<_>>()?;
                if counts.len() != writes.len() {
                    return Err(DbError::Query(format!("{} counts for {} writes", counts.len(), writes.len())));
                }
                Ok(counts)
            }
            Engine::Sqlite(_) => {
                self.transaction(|db| writes.statements.iter().map(|(sql, params)| db.execute(sql, params)).collect())
            }
        }
    }

    /// Runs `chain` (see [`Chain`]) as one transaction; whether every link
    /// took, and so the writes after it ran. The links before one that did
    /// not take stay written, on either engine, unless the chain is
    /// [`Chain::whole`], which then has written nothing.
    pub fn commit_chain(&self, chain: Chain) -> Result<bool> {
        match &self.engine {
            Engine::Postgres(conn) if !chain.links.is_empty() => {
                let (sql, params) = chained_statement(&chain);
                match self.on_schema(&sql, &params, |sql, params| conn.query(sql, params).map_err(pg_error)) {
                    Ok(set) => {
                        let row = set.rows.into_iter().next().unwrap_or_default();
                        Ok(row.into_iter().map(pg_cell).eq([Cell::Int(1)]))
                    }
                    Err(DbError::Query(text)) if chain.whole && text.contains(BROKEN_CHAIN) => Ok(false),
                    Err(e) => Err(e),
                }
            }
            _ => {
                let result = self.transaction(|db| {
                    for (sql, params, expected) in &chain.links {
                        if db.execute(sql, params)? != *expected {
                            return match chain.whole {
                                true => Err(DbError::Query(BROKEN_CHAIN.to_string())),
                                false => Ok(false),
                            };
                        }
                    }
                    for (sql, params) in &chain.then.statements {
                        db.execute(sql, params)?;
                    }
                    Ok(true)
                });
                match result {
                    Err(DbError::Query(text)) if chain.whole && text == BROKEN_CHAIN => Ok(false),
                    other => other,
                }
            }
        }
    }

    /// Runs `f` in a transaction: committed if it returns `Ok`, rolled back
    /// otherwise. (Its `BEGIN` is no statement a schema guard can go with,
    /// so a database opened for a service checks its schema first.)
    pub fn transaction<T, E: From<DbError>>(&self, f: impl FnOnce(&Db) -> Result<T, E>) -> Result<T, E> {
        self.execute("BEGIN", &[])?;
        match f(self) {
            Ok(value) => {
                self.execute("COMMIT", &[])?;
                Ok(value)
            }
            Err(e) => {
                let _ = self.execute("ROLLBACK", &[]);
                Err(e)
            }
        }
    }
}

impl Rows {
    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|cells| Row { columns: &self.columns, cells })
    }

    pub fn first(&self) -> Option<Row<'_>> {
        self.iter().next()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl Row<'_> {
    fn cell(&self, column: &str) -> Result<&Cell> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))
            .map(|i| &self.cells[i])
            .ok_or_else(|| DbError::Column(column.to_string()))
    }

    pub fn int(&self, column: &str) -> Result<i64> {
        match self.cell(column)? {
            Cell::Int(v) => Ok(*v),
            Cell::Real(v) => Ok(*v as i64),
            Cell::Text(t) => t.parse().map_err(|_| DbError::Column(column.to_string())),
            Cell::Null => Err(DbError::Column(column.to_string())),
        }
    }

    pub fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            _ => self.int(column).map(Some),
        }
    }

    pub fn real(&self, column: &str) -> Result<f64> {
        match self.cell(column)? {
            Cell::Real(v) => Ok(*v),
            Cell::Int(v) => Ok(*v as f64),
            _ => Err(DbError::Column(column.to_string())),
        }
    }

    pub fn text(&self, column: &str) -> Result<String> {
        match self.cell(column)? {
            Cell::Text(t) => Ok(t.clone()),
            Cell::Int(v) => Ok(v.to_string()),
            _ => Err(DbError::Column(column.to_string())),
        }
    }

    pub fn opt_text(&self, column: &str) -> Result<Option<String>> {
        match self.cell(column)? {
            Cell::Null => Ok(None),
            _ => self.text(column).map(Some),
        }
    }

    pub fn bool(&self, column: &str) -> Result<bool> {
        self.int(column).map(|v| v != 0)
    }
}

/// Postgres's one statement for several writes (see [`Db::execute_all`]):
/// all but the last become data-modifying `WITH` parts.
fn one_statement(statements: &[(String, Vec<Param>)]) -> (String, Vec<Param>) {
    let (mut sqls, params) = numbered_in_turn(statements);
    let last = sqls.pop().unwrap_or_default();
    if sqls.is_empty() {
        return (last, params);
    }
    let parts: Vec<String> = sqls.iter().enumerate().map(|(i, sql)| format!("w{} AS ({sql})", i + 1)).collect();
    (format!("WITH {} {last}", parts.join(", ")), params)
}

/// Postgres's one statement for [`Db::commit_each`]: every write a `WITH`
/// part returning a row per row it changed, and one row of their counts.
fn counted_statement(statements: &[(String, Vec<Param>)]) -> (String, Vec<Param>) {
    let (sqls, params) = numbered_in_turn(statements);
    let parts: Vec<String> = sqls.iter().enumerate().map(|(i, sql)| format!("w{} AS ({sql} RETURNING 1)", i + 1)).collect();
    let counts: Vec<String> = (1..=sqls.len()).map(|i| format!("(SELECT COUNT(*) FROM w{i}) AS n{i}")).collect();
    (format!("WITH {} SELECT {}", parts.join(", "), counts.join(", ")), params)
}

/// Postgres's one statement for [`Db::commit_chain`], answering one row:
/// whether the last link changed the rows it expected (a link runs only if
/// the one before did, so all did).
fn chained_statement(chain: &Chain) -> (String, Vec<Param>) {
    let statements: Vec<(String, Vec<Param>)> = chain
        .links
        .iter()
        .map(|(sql, params, _)| (sql.clone(), params.clone()))
        .chain(chain.then.statements.iter().cloned())
        .collect();
    let (sqls, params) = numbered_in_turn(&statements);
    let took = |i: usize| format!("(SELECT COUNT(*) FROM l{}) = {}", i + 1, chain.links[i].2);
    let mut parts = Vec::with_capacity(sqls.len());
    for (i, sql) in sqls.iter().enumerate() {
        parts.push(match i {
            0 => format!("l1 AS ({sql} RETURNING 1)"),
            i if i < chain.links.len() => format!("l{} AS ({sql} AND {} RETURNING 1)", i + 1, took(i - 1)),
            i => format!("w{} AS ({sql} WHERE {})", i - chain.links.len() + 1, took(chain.links.len() - 1)),
        });
    }
    let last = chain.links.len() - 1;
    let answer = match chain.whole {
        // The CASE depends on the links, so the cast is made when the
        // statement runs, not folded while it is planned.
        true => format!("CAST(CASE WHEN {} THEN '1' ELSE '{BROKEN_CHAIN}' END AS INTEGER)", took(last)),
        false => format!("CASE WHEN {} THEN 1 ELSE 0 END", took(last)),
    };
    (format!("WITH {} SELECT {answer} AS took", parts.join(", ")), params)
}

/// The statements with their placeholders moved past the parameters of
/// those before them, and all the parameters in order: one numbering for
/// one statement made of several.
fn numbered_in_turn(statements: &[(String, Vec<Param>)]) -> (Vec<String>, Vec<Param>) {
    let mut sqls = Vec::with_capacity(statements.len());
    let mut params = Vec::new();
    for (statement, own) in statements {
        sqls.push(shift_placeholders(statement, params.len()));
        params.extend(own.iter().cloned());
    }
    (sqls, params)
}

/// `$n` → `$(n + by)`.
fn shift_placeholders(sql: &str, by: usize) -> String {
    rewrite_placeholders(sql, '$', by).into_owned()
}

/// `$1` → `?1`: SQLite binds `?NNN` by number, so parameters may repeat or
/// appear out of order exactly as in Postgres.
fn sqlite_placeholders(sql: &str) -> Cow<'_, str> {
    rewrite_placeholders(sql, '?', 0)
}

/// Every `$n` outside string literals as `prefix` and `n + shift`.
///
/// It runs for every statement a service sends to SQLite, in a fresh
/// instance each time (nothing is kept between requests), so it copies the
/// text between placeholders whole rather than char by char and writes
/// numbers without `fmt`: the char-by-char version with `write!` was 1.0%
/// of the machine's CPU in the checkout benchmark, this one 0.56%. SQL
/// without a `$` is passed through as it is.
fn rewrite_placeholders(sql: &str, prefix: char, shift: usize) -> Cow<'_, str> {
    let bytes = sql.as_bytes();
    if !bytes.contains(&b'$') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut numbers = itoa::Buffer::new();
    let mut in_string = false;
    // `sql[..copied]` is in `out` already. Every index it takes is that of
    // an ASCII byte or the end, so always a char boundary.
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => in_string = !in_string,
            b'$' if !in_string && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                out.push_str(&sql[copied..i]);
                let mut number = 0usize;
                i += 1;
                while let Some(digit) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
                    number = number.saturating_mul(10).saturating_add(usize::from(digit - b'0'));
                    i += 1;
                }
                out.push(prefix);
                out.push_str(numbers.format(number.saturating_add(shift)));
                copied = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&sql[copied..]);
    Cow::Owned(out)
}

fn sqlite_params(params: &[Param]) -> Vec<sqlite3::Value> {
    params
        .iter()
        .map(|p| match p {
            Param::Null => sqlite3::Value::Null,
            Param::Int(v) => sqlite3::Value::Integer(*v),
            Param::Real(v) => sqlite3::Value::Real(*v),
            Param::Text(v) => sqlite3::Value::Text(v.clone()),
        })
        .collect()
}

fn sqlite_cell(v: sqlite3::Value) -> Cell {
    match v {
        sqlite3::Value::Null => Cell::Null,
        sqlite3::Value::Integer(v) => Cell::Int(v),
        sqlite3::Value::Real(v) => Cell::Real(v),
        sqlite3::Value::Text(v) => Cell::Text(v),
        sqlite3::Value::Blob(v) => Cell::Text(String::from_utf8_lossy(&v).into_owned()),
    }
}

fn sqlite_error(e: sqlite3::Error) -> DbError {
    let text = match &e {
        sqlite3::Error::Io(m) => m.clone(),
        other => format!("{other:?}"),
    };
    if text.contains("UNIQUE constraint failed") {
        DbError::Duplicate(text)
    } else {
        DbError::Query(text)
    }
}

fn pg_params(params: &[Param]) -> Vec<pg4::ParameterValue> {
    params
        .iter()
        .map(|p| match p {
            Param::Null => pg4::ParameterValue::DbNull,
            Param::Int(v) => pg4::ParameterValue::Int64(*v),
            Param::Real(v) => pg4::ParameterValue::Floating64(*v),
            Param::Text(v) => pg4::ParameterValue::Str(v.clone()),
        })
        .collect()
}

fn pg_cell(v: pg4::DbValue) -> Cell {
    use pg4::DbValue as V;
    match v {
        V::DbNull => Cell::Null,
        V::Boolean(b) => Cell::Int(b.into()),
        V::Int8(v) => Cell::Int(v.into()),
        V::Int16(v) => Cell::Int(v.into()),
        V::Int32(v) => Cell::Int(v.into()),
        V::Int64(v) => Cell::Int(v),
        V::Floating32(v) => Cell::Real(v.into()),
        V::Floating64(v) => Cell::Real(v),
        V::Str(s) => Cell::Text(s),
        V::Decimal(s) => Cell::Text(s),
        V::Binary(b) => Cell::Text(String::from_utf8_lossy(&b).into_owned()),
        other => Cell::Text(format!("{other:?}")),
    }
}

fn pg_error(e: pg4::PgError) -> DbError {
    let text = format!("{e:?}");
    // SQLSTATE 23505: unique_violation.
    if text.contains("23505") {
        DbError::Duplicate(text)
    } else {
        DbError::Query(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_sqlite_ones_outside_strings() {
        assert_eq!(sqlite_placeholders("SELECT $1, $2 WHERE a = $1"), "SELECT ?1, ?2 WHERE a = ?1");
        assert_eq!(sqlite_placeholders("SELECT '$1' || $1"), "SELECT '$1' || ?1");
        assert_eq!(sqlite_placeholders("SELECT price$"), "SELECT price$");
        assert_eq!(sqlite_placeholders("SELECT $10, $2a, $"), "SELECT ?10, ?2a, $");
        // A doubled quote inside a literal keeps it a literal.
        assert_eq!(sqlite_placeholders("SELECT 'it''s $1', $1"), "SELECT 'it''s $1', ?1");
        // Text around placeholders that is not ASCII comes through whole.
        assert_eq!(sqlite_placeholders("SELECT 'é$1' || $1 || 'ü'"), "SELECT 'é$1' || ?1 || 'ü'");
        assert_eq!(sqlite_placeholders("SELECT ñ, $1ñ"), "SELECT ñ, ?1ñ");
        // Nothing to rewrite: the text itself, not a copy.
        assert!(matches!(sqlite_placeholders("SELECT 1"), Cow::Borrowed("SELECT 1")));
    }

    #[test]
    fn writes_become_one_statement_with_their_placeholders_moved_past_those_before() {
        let texts = |s: &str| Param::Text(s.to_string());
        let statements = vec![
            ("INSERT INTO a (x, y) VALUES ($1, $2)".to_string(), vec![texts("a1"), Param::Int(2)]),
            ("INSERT INTO b (x, z) VALUES ($1, '$1'), ($2, $1)".to_string(), vec![texts("b1"), texts("b2")]),
            ("INSERT INTO c (x) VALUES ($1)".to_string(), vec![Param::Null]),
        ];
        let (sql, params) = one_statement(&statements);
        assert_eq!(
            sql,
            "WITH w1 AS (INSERT INTO a (x, y) VALUES ($1, $2)), \
             w2 AS (INSERT INTO b (x, z) VALUES ($3, '$1'), ($4, $3)) INSERT INTO c (x) VALUES ($5)"
        );
        assert_eq!(params, vec![texts("a1"), Param::Int(2), texts("b1"), texts("b2"), Param::Null]);
        assert_eq!(shift_placeholders("SELECT $9, $10", 3), "SELECT $12, $13");
        let (sql, _) = one_statement(&statements[..1]);
        assert_eq!(sql, statements[0].0);
    }

    #[test]
    fn counted_writes_become_one_statement_returning_each_count() {
        let statements = vec![
            ("INSERT INTO a (x) VALUES ($1)".to_string(), vec![Param::Int(1)]),
            ("UPDATE b SET y = $2 WHERE x = $1".to_string(), vec![Param::Int(2), Param::Int(3)]),
        ];
        let (sql, params) = counted_statement(&statements);
        assert_eq!(
            sql,
            "WITH w1 AS (INSERT INTO a (x) VALUES ($1) RETURNING 1), w2 AS (UPDATE b SET y = $3 WHERE x = $2 RETURNING 1) \
             SELECT (SELECT COUNT(*) FROM w1) AS n1, (SELECT COUNT(*) FROM w2) AS n2"
        );
        assert_eq!(params, vec![Param::Int(1), Param::Int(2), Param::Int(3)]);
    }

    #[test]
    fn a_chain_becomes_one_statement_each_link_on_the_count_of_the_one_before() {
        let mut chain = Chain::default();
        chain.link("INSERT INTO f (x) VALUES ($1), ($2)", vec![Param::Int(1), Param::Int(2)], 2);
        chain.link("UPDATE o SET s = $2 WHERE id = $1", vec![Param::Int(3), Param::Int(4)], 1);
        chain.then().push("INSERT INTO h (x) SELECT $1", vec![Param::Int(5)]);
        let (sql, params) = chained_statement(&chain);
        assert_eq!(
            sql,
            "WITH l1 AS (INSERT INTO f (x) VALUES ($1), ($2) RETURNING 1), \
             l2 AS (UPDATE o SET s = $4 WHERE id = $3 AND (SELECT COUNT(*) FROM l1) = 2 RETURNING 1), \
             w1 AS (INSERT INTO h (x) SELECT $5 WHERE (SELECT COUNT(*) FROM l2) = 1) \
             SELECT CASE WHEN (SELECT COUNT(*) FROM l2) = 1 THEN 1 ELSE 0 END AS took"
        );
        assert_eq!(params, (1..=5).map(Param::Int).collect::<Vec<_>>());
        let mut whole = Chain::whole();
        whole.link("INSERT INTO f (x) VALUES ($1)", vec![Param::Int(1)], 1);
        let (sql, _) = chained_statement(&whole);
        assert_eq!(
            sql,
            "WITH l1 AS (INSERT INTO f (x) VALUES ($1) RETURNING 1) SELECT CAST(CASE WHEN (SELECT COUNT(*) FROM l1) = 1 \
             THEN '1' ELSE 'a link of the chain did not take' END AS INTEGER) AS took"
        );
    }

    #[test]
    fn rows_bind_each_item_after_the_shared_values() {
        let mut sql = Bindings::default();
        let order = sql.bind("o-1");
        let rows = sql.rows([("a", 2i64), ("b", 5)], |sql, (sku, quantity)| {
            vec![order.clone(), sql.bind(sku), sql.bind(quantity)]
        });
        assert_eq!(rows, "($1, $2, $3), ($1, $4, $5)");
        let texts = |s: &str| Param::Text(s.to_string());
        assert_eq!(sql.params, vec![texts("o-1"), texts("a"), Param::Int(2), texts("b"), Param::Int(5)]);
    }

    #[test]
    fn a_list_binds_each_item_after_what_was_bound_before() {
        let mut sql = Bindings::default();
        let now = sql.bind(7i64);
        let ids = ["e-1".to_string(), "e-2".to_string()];
        assert_eq!((now, sql.list(&ids)), ("$1".to_string(), "$2, $3".to_string()));
        let texts = |s: &str| Param::Text(s.to_string());
        assert_eq!(sql.params, vec![Param::Int(7), texts("e-1"), texts("e-2")]);
        assert_eq!(Bindings::default().list(Vec::<String>::new()), "");
    }
}
