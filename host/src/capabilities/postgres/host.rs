//! The guest interfaces over [`PostgresInstance`]: 4.0.0 natively, 3.0.0
//! and 2.0.0 through `compat`. All three share the instance's connection
//! table, so a handle is only ever used through the version that made it.
use wasmtime::component::Resource;

use super::PostgresInstance;
use super::compat;
use crate::bindings::fermyon::spin2_0_0::{postgres as v2, rdbms_types as v2_types};
use crate::bindings::spin::postgres3_0_0::postgres as v3;
use crate::bindings::spin::postgres4_0_0::postgres as v4;

impl v4::Host for PostgresInstance {}

impl v4::HostConnection for PostgresInstance {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<v4::Connection>, v4::Error>> {
        PostgresInstance::open(self, &address).await
    }

    async fn query(
        &mut self,
        connection: Resource<v4::Connection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<Result<v4::RowSet, v4::Error>> {
        Ok(self.connection(&connection)?.query(&statement, &params).await)
    }

    async fn execute(
        &mut self,
        connection: Resource<v4::Connection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v4::Error>> {
        Ok(self.connection(&connection)?.execute(&statement, &params).await)
    }

    async fn drop(&mut self, connection: Resource<v4::Connection>) -> wasmtime::Result<()> {
        self.close(connection)
    }
}

impl v3::Host for PostgresInstance {}

impl v3::HostConnection for PostgresInstance {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<v3::Connection>, v3::Error>> {
        Ok(PostgresInstance::open(self, &address).await?.map_err(compat::v3_error))
    }

    async fn query(
        &mut self,
        connection: Resource<v3::Connection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<Result<v3::RowSet, v3::Error>> {
        let params: Vec<_> = params.into_iter().map(compat::v3_param).collect();
        let result = self.connection(&connection)?.query(&statement, &params).await;
        Ok(result.map(compat::v3_row_set).map_err(compat::v3_error))
    }

    async fn execute(
        &mut self,
        connection: Resource<v3::Connection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v3::Error>> {
        let params: Vec<_> = params.into_iter().map(compat::v3_param).collect();
        Ok(self.connection(&connection)?.execute(&statement, &params).await.map_err(compat::v3_error))
    }

    async fn drop(&mut self, connection: Resource<v3::Connection>) -> wasmtime::Result<()> {
        self.close(connection)
    }
}

impl v2_types::Host for PostgresInstance {}

impl v2::Host for PostgresInstance {}

impl v2::HostConnection for PostgresInstance {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<v2::Connection>, v2::Error>> {
        Ok(PostgresInstance::open(self, &address).await?.map_err(compat::v2_error))
    }

    async fn query(
        &mut self,
        connection: Resource<v2::Connection>,
        statement: String,
        params: Vec<v2_types::ParameterValue>,
    ) -> wasmtime::Result<Result<v2_types::RowSet, v2::Error>> {
        let params = match params.into_iter().map(compat::v2_param).collect::<Result<Vec<_>, _>>() {
            Ok(params) => params,
            Err(e) => return Ok(Err(e)),
        };
        let result = self.connection(&connection)?.query(&statement, &params).await;
        Ok(result.map(compat::v2_row_set).map_err(compat::v2_error))
    }

    async fn execute(
        &mut self,
        connection: Resource<v2::Connection>,
        statement: String,
        params: Vec<v2_types::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v2::Error>> {
        let params = match params.into_iter().map(compat::v2_param).collect::<Result<Vec<_>, _>>() {
            Ok(params) => params,
            Err(e) => return Ok(Err(e)),
        };
        Ok(self.connection(&connection)?.execute(&statement, &params).await.map_err(compat::v2_error))
    }

    async fn drop(&mut self, connection: Resource<v2::Connection>) -> wasmtime::Result<()> {
        self.close(connection)
    }
}
