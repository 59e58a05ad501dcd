//! `spin:sqlite/sqlite@3.0.0` and `fermyon:spin/sqlite@2.0.0`, both over
//! [`SqliteInstance`]. 3.0.0 is 2.0.0 plus `last-insert-rowid` and
//! `changes`; its types are otherwise the same, so 2.0.0 converts to it.
use wasmtime::component::Resource;

use super::SqliteInstance;
use crate::bindings::fermyon::spin2_0_0::sqlite as v2;
use crate::bindings::spin::sqlite::sqlite as v3;

impl v3::Host for SqliteInstance {}

impl v3::HostConnection for SqliteInstance {
    async fn open(&mut self, database: String) -> wasmtime::Result<Result<Resource<v3::Connection>, v3::Error>> {
        SqliteInstance::open(self, database).await
    }

    async fn execute(
        &mut self,
        connection: Resource<v3::Connection>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> wasmtime::Result<Result<v3::QueryResult, v3::Error>> {
        self.connection(&connection)?.execute(statement, parameters).await
    }

    async fn last_insert_rowid(&mut self, connection: Resource<v3::Connection>) -> wasmtime::Result<i64> {
        Ok(self.connection(&connection)?.last_insert_rowid())
    }

    async fn changes(&mut self, connection: Resource<v3::Connection>) -> wasmtime::Result<u64> {
        Ok(self.connection(&connection)?.changes())
    }

    async fn drop(&mut self, connection: Resource<v3::Connection>) -> wasmtime::Result<()> {
        self.close(connection)
    }
}

impl v2::Host for SqliteInstance {}

impl v2::HostConnection for SqliteInstance {
    async fn open(&mut self, database: String) -> wasmtime::Result<Result<Resource<v2::Connection>, v2::Error>> {
        Ok(SqliteInstance::open(self, database).await?.map_err(to_v2_error))
    }

    async fn execute(
        &mut self,
        connection: Resource<v2::Connection>,
        statement: String,
        parameters: Vec<v2::Value>,
    ) -> wasmtime::Result<Result<v2::QueryResult, v2::Error>> {
        let parameters = parameters.into_iter().map(to_v3_value).collect();
        let result = self.connection(&connection)?.execute(statement, parameters).await?;
        Ok(result.map(to_v2_result).map_err(to_v2_error))
    }

    async fn drop(&mut self, connection: Resource<v2::Connection>) -> wasmtime::Result<()> {
        self.close(connection)
    }
}

fn to_v2_error(error: v3::Error) -> v2::Error {
    match error {
        v3::Error::NoSuchDatabase => v2::Error::NoSuchDatabase,
        v3::Error::AccessDenied => v2::Error::AccessDenied,
        v3::Error::InvalidConnection => v2::Error::InvalidConnection,
        v3::Error::DatabaseFull => v2::Error::DatabaseFull,
        v3::Error::Io(message) => v2::Error::Io(message),
    }
}

fn to_v3_value(value: v2::Value) -> v3::Value {
    match value {
        v2::Value::Integer(i) => v3::Value::Integer(i),
        v2::Value::Real(r) => v3::Value::Real(r),
        v2::Value::Text(t) => v3::Value::Text(t),
        v2::Value::Blob(b) => v3::Value::Blob(b),
        v2::Value::Null => v3::Value::Null,
    }
}

fn to_v2_value(value: v3::Value) -> v2::Value {
    match value {
        v3::Value::Integer(i) => v2::Value::Integer(i),
        v3::Value::Real(r) => v2::Value::Real(r),
        v3::Value::Text(t) => v2::Value::Text(t),
        v3::Value::Blob(b) => v2::Value::Blob(b),
        v3::Value::Null => v2::Value::Null,
    }
}

fn to_v2_result(result: v3::QueryResult) -> v2::QueryResult {
    v2::QueryResult {
        columns: result.columns,
        rows: result
            .rows
            .into_iter()
            .map(|row| v2::RowResult { values: row.values.into_iter().map(to_v2_value).collect() })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use v3::HostConnection as _;

    use super::*;
    use crate::capabilities::sqlite::tests::{app, in_a_minute};

    async fn open(instance: &mut SqliteInstance, name: &str) -> Result<Resource<v3::Connection>, v3::Error> {
        v3::HostConnection::open(instance, name.into()).await.unwrap()
    }

    async fn exec(instance: &mut SqliteInstance, rep: u32, sql: &str, params: Vec<v3::Value>) -> v3::QueryResult {
        v3::HostConnection::execute(instance, Resource::new_borrow(rep), sql.into(), params).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn open_follows_the_grants() {
        let sqlite = app(&[("web", &["default", "undefined"])], &[("default", None), ("secret", None)]);
        let mut web = sqlite.instance("web", in_a_minute());
        assert!(matches!(open(&mut web, "secret").await, Err(v3::Error::AccessDenied)));
        assert!(matches!(open(&mut web, "nope").await, Err(v3::Error::AccessDenied)));
        assert!(matches!(open(&mut web, "undefined").await, Err(v3::Error::NoSuchDatabase)));
        assert!(open(&mut web, "default").await.is_ok());
        let denied = v2::HostConnection::open(&mut web, "secret".into()).await.unwrap();
        assert!(matches!(denied, Err(v2::Error::AccessDenied)));
    }

    #[tokio::test]
    async fn in_memory_databases_are_shared_between_instances() {
        let sqlite = app(&[("a", &["default"]), ("b", &["default"])], &[("default", None)]);
        let mut a = sqlite.instance("a", in_a_minute());
        let conn = open(&mut a, "default").await.unwrap();
        exec(&mut a, conn.rep(), "CREATE TABLE t (x)", vec![]).await;
        exec(&mut a, conn.rep(), "INSERT INTO t VALUES (?)", vec![v3::Value::Integer(7)]).await;
        assert_eq!(a.last_insert_rowid(Resource::new_borrow(conn.rep())).await.unwrap(), 1);
        assert_eq!(a.changes(Resource::new_borrow(conn.rep())).await.unwrap(), 1);
        v3::HostConnection::drop(&mut a, conn).await.unwrap();
        drop(a);

        // Through 2.0.0, from another component's instance.
        let mut b = sqlite.instance("b", in_a_minute());
        let conn = v2::HostConnection::open(&mut b, "default".into()).await.unwrap().unwrap();
        let params = vec![v2::Value::Integer(7)];
        let result = v2::HostConnection::execute(
            &mut b,
            Resource::new_borrow(conn.rep()),
            "SELECT x FROM t WHERE x = ?".into(),
            params,
        );
        let result = result.await.unwrap().unwrap();
        assert_eq!(result.columns, ["x"]);
        assert!(matches!(result.rows[0].values[..], [v2::Value::Integer(7)]));
        v2::HostConnection::drop(&mut b, conn).await.unwrap();
    }

    #[tokio::test]
    async fn each_open_is_its_own_connection() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = app(&[("web", &["default"])], &[("default", Some(dir.path().join("db.sqlite")))]);
        let mut web = sqlite.instance("web", in_a_minute());
        let one = open(&mut web, "default").await.unwrap();
        let two = open(&mut web, "default").await.unwrap().rep();
        exec(&mut web, one.rep(), "CREATE TABLE t (x)", vec![]).await;
        exec(&mut web, one.rep(), "BEGIN", vec![]).await;
        exec(&mut web, one.rep(), "INSERT INTO t VALUES (1)", vec![]).await;
        // The other connection does not see the uncommitted row.
        assert!(exec(&mut web, two, "SELECT x FROM t", vec![]).await.rows.is_empty());
        // Dropping a connection mid-transaction rolls it back.
        v3::HostConnection::drop(&mut web, one).await.unwrap();
        exec(&mut web, two, "INSERT INTO t VALUES (2)", vec![]).await;
        assert_eq!(exec(&mut web, two, "SELECT x FROM t", vec![]).await.rows.len(), 1);
    }

    #[tokio::test]
    async fn an_instance_cannot_hoard_connections() {
        let sqlite = app(&[("web", &["default"])], &[("default", None)]);
        let mut web = sqlite.instance("web", in_a_minute());
        for _ in 0..256 {
            open(&mut web, "default").await.unwrap();
        }
        assert!(matches!(open(&mut web, "default").await, Err(v3::Error::Io(m)) if m.contains("too many connections")));
    }
}
