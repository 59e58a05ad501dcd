//! What the shop's services share, and nothing else: each service owns its
//! model and its data.
//!
//! - [`events`]: the order and profile events on the bus (the contracts
//!   between orders, users and notifications);
//! - [`api`]: the one JSON error shape every service answers with, and the
//!   headers every chained call carries (request id, trace context);
//! - [`db`]: the SQL adapter. A service names its database in its
//!   `database_url` Spin variable, `sqlite:<name>` in embedded mode or
//!   `postgres://...` in production, and writes portable SQL once.
pub mod api;
pub mod db;
pub mod events;
