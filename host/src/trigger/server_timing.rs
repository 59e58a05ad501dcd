//! `bazaar up --server-timing`: every response to a request from the
//! network says, in a W3C `Server-Timing` field, when the host read the
//! request's head (wall-clock microseconds since the Unix epoch), how long
//! the request then waited at the door to be admitted
//! (`--max-concurrent-requests`) and how long it then took to its response
//! head:
//!
//! ```text
//! server-timing: read;desc="request head read";at=1765094400123456, queue;dur=12.250;desc="waiting to be admitted", app;dur=3.125;desc="admitted to response head"
//! ```
//!
//! Why: a client sees only the sum. Under load, whether a slow request
//! waited behind others or ran slowly is the first question (the shop's
//! benchmark traces both, see scripts/bench/latency_spread.py), and browser
//! developer tools show the field as it is. The read's time is a clock
//! reading, not a duration, because only a client on the same machine
//! (the same wall clock) can use it: the time from sending a request to
//! the host reading it is the wait in the socket while the host's workers
//! were busy, which no clock of the host's can see. Durations are
//! milliseconds, as the W3C format wants; a parameter other than `dur` and
//! `desc` is one that browsers pass over. The field is appended, so one
//! the component set itself stays. Off by default: it tells the world how
//! loaded the host is.
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Response};

pub const SERVER_TIMING: &str = "server-timing";

/// The field's value for a request read at `read`, that waited `queue` and
/// then ran `app`.
pub fn value(read: SystemTime, queue: Duration, app: Duration) -> String {
    // A clock set before 1970 reads as 0: the durations still hold.
    let read_at = read.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_micros();
    format!(
        "read;desc=\"request head read\";at={read_at}, queue;dur={:.3};desc=\"waiting to be admitted\", app;dur={:.3};desc=\"admitted to response head\"",
        millis(queue),
        millis(app)
    )
}

/// Appends the field to `response`.
pub fn append<B>(response: &mut Response<B>, read: SystemTime, queue: Duration, app: Duration) {
    // Digits, letters and punctuation only: always a valid header value.
    if let Ok(value) = HeaderValue::from_str(&value(read, queue, app)) {
        response.headers_mut().append(SERVER_TIMING, value);
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_milliseconds_with_microsecond_digits_and_the_read_microseconds_since_1970() {
        let read = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_765_094_400_123_456_789);
        let v = value(read, Duration::from_micros(12_250), Duration::from_nanos(3_125_400));
        assert_eq!(
            v,
            "read;desc=\"request head read\";at=1765094400123456, queue;dur=12.250;desc=\"waiting to be admitted\", app;dur=3.125;desc=\"admitted to response head\""
        );
    }

    #[test]
    fn a_field_the_component_set_is_kept() {
        let mut response = Response::builder().header(SERVER_TIMING, "db;dur=1").body(()).unwrap();
        append(&mut response, SystemTime::now(), Duration::ZERO, Duration::from_millis(2));
        let fields: Vec<_> = response.headers().get_all(SERVER_TIMING).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(fields.len(), 2, "{fields:?}");
        assert_eq!(fields[0], "db;dur=1");
        assert!(fields[1].starts_with("read;desc="), "{fields:?}");
        assert!(fields[1].contains(", queue;dur=0.000;"), "{fields:?}");
    }
}
