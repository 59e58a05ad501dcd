//! Triggers feed events to components. The HTTP trigger is the one every
//! Spin app has; the Redis trigger (message bus) joins it later.
pub mod http;
pub mod spin_headers;
