//! The subscriber: a Redis-trigger test component that records the messages
//! the bus delivers to it, so tests can check delivery, order, retries and
//! dead letters from the outside.
//!
//! It appends each message it accepts to the JSON array at key
//! `log:<SUBSCRIBER_NAME>` of the `bus_log` key-value store (the probe reads
//! it back over HTTP). What a message says decides how it is handled:
//!
//! | payload            | behaviour                                                |
//! |--------------------|----------------------------------------------------------|
//! | `fail:<anything>`  | always fails (ends as a dead letter)                      |
//! | `flaky:<n>:<id>`   | fails the first `n` deliveries, then succeeds             |
//! | `slow:<ms>:<id>`   | succeeds after `ms` milliseconds (a delivery in flight)   |
//! | `open:<gate>`      | succeeds, then opens the gate                            |
//! | `wait:<gate>`      | waits (up to 10 s) for the gate to open, then succeeds    |
//! | anything else      | succeeds                                                  |
//!
//! Every delivery, failed or not, also increments `attempts:<NAME>:<payload>`.
//! A `wait:` published before its `open:` completes only if the subscriber
//! handles more than one message at a time (`[message_bus.in_flight]`).
//! The log is read, appended and written back: two messages finishing at
//! the same moment could lose one entry, so tests that handle several at
//! once order their finishes with gates.
use anyhow::{Result, bail};
use bytes::Bytes;
use spin_sdk::key_value::Store;
use spin_sdk::redis_component;

#[redis_component]
fn on_message(message: Bytes) -> Result<()> {
    let name = std::env::var("SUBSCRIBER_NAME").unwrap_or_else(|_| "subscriber".into());
    let text = String::from_utf8_lossy(&message).to_string();
    let store = Store::open("bus_log")?;

    let attempts_key = format!("attempts:{name}:{text}");
    let attempts = read_counter(&store, &attempts_key)? + 1;
    store.set(&attempts_key, attempts.to_string().as_bytes())?;

    if let Some(reason) = text.strip_prefix("fail:") {
        bail!("{name} refuses {reason:?} on purpose");
    }
    if let Some(rest) = text.strip_prefix("flaky:") {
        let failures: u64 = rest.split(':').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        if attempts <= failures {
            bail!("{name} fails delivery {attempts} of {text:?} on purpose");
        }
    }
    if let Some(rest) = text.strip_prefix("slow:") {
        let ms: u64 = rest.split(':').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }

    if let Some(gate) = text.strip_prefix("wait:") {
        let key = format!("gate:{name}:{gate}");
        let mut waited = 0;
        while store.get(&key)?.is_none() {
            if waited >= 10_000 {
                bail!("{name}: gate {gate:?} did not open in 10 s (is {name} handling one message at a time?)");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            waited += 20;
        }
    }

    let log_key = format!("log:{name}");
    let mut log: Vec<String> = match store.get(&log_key)? {
        Some(bytes) => serde_json::from_slice(&bytes)?,
        None => Vec::new(),
    };
    log.push(text.clone());
    store.set(&log_key, &serde_json::to_vec(&log)?)?;
    println!("{name} handled message {}", log.len());
    if let Some(gate) = text.strip_prefix("open:") {
        store.set(&format!("gate:{name}:{gate}"), b"open")?;
    }
    Ok(())
}

fn read_counter(store: &Store, key: &str) -> Result<u64> {
    Ok(match store.get(key)? {
        Some(bytes) => String::from_utf8_lossy(&bytes).parse().unwrap_or(0),
        None => 0,
    })
}
