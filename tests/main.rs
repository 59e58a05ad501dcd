//! The end-to-end tests: one test binary, one module a file.
//!
//! Each module starts the real `bazaar` binary (the harness in `support`)
//! and talks to it as a user would. They share one binary because each
//! binary links the whole host: eighteen links cost minutes of every cold
//! build. Tests of different modules run side by side, so whatever a test
//! owns outside its temporary directory (a Postgres database, a Redis
//! database number from `support::redis_dbs`) is its own.
mod support;

mod admin;
mod auth_users;
mod bus;
mod capabilities;
mod cli;
mod consistency;
mod gateway;
mod hot_swap;
mod http_trigger;
mod orders;
mod payments_notifications;
mod postgres;
mod products;
mod redis;
mod saga_faults;
mod shop;
mod shop_swap;
mod telemetry;
