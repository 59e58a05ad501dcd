//! Triggers feed events to components. The HTTP trigger is the one every
//! Spin app has; the Redis trigger runs components on messages from the bus.
pub mod adaptive_limit;
pub mod admission;
pub mod cpu_quota;
pub mod cut_short;
pub mod http;
pub mod ready_wait;
pub mod redis;
pub mod served_by;
pub mod server_timing;
pub mod spare_cpu;
pub mod spin_headers;
pub mod unread_body;
