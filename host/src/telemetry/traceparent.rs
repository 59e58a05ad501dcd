//! The W3C Trace Context `traceparent` header
//! (<https://www.w3.org/TR/trace-context/>): which trace a request belongs
//! to, and which span of the caller it came from.
//!
//! `version-traceid-parentid-flags`, lowercase hex, for example
//! `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`. A value that
//! breaks any rule of the spec is not honoured: the request starts a new
//! trace instead, as the spec asks of a receiver.
use std::fmt;

use rand::Rng;

pub const HEADER: &str = "traceparent";
/// Vendor data that rides along with a `traceparent` it belongs to.
pub const STATE_HEADER: &str = "tracestate";

/// Longest `tracestate` passed on (the spec's 32 members of at most 256
/// characters could be far longer; 512 is what vendors must accept).
pub const MAX_STATE_LEN: usize = 512;

/// One `traceparent` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    /// The span of the sender this request is a child of.
    pub parent_id: [u8; 8],
    /// Bit 0: sampled (the sender may have recorded the trace).
    pub flags: u8,
}

/// The only flag of version 00.
pub const SAMPLED: u8 = 0x01;

impl TraceParent {
    /// Parses a header value, per the spec's rules for a receiver: version
    /// `ff` is invalid; version `00` is exactly 55 characters; a later
    /// version may be longer, its extra fields after a `-`, and is read as
    /// version 00; ids are lowercase hex and not all zeros.
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.as_bytes();
        if v.len() < 55 {
            return None;
        }
        let version = hex_u8(&v[0..2])?;
        match version {
            0xff => return None,
            0x00 if v.len() != 55 => return None,
            _ if v.len() > 55 && v[55] != b'-' => return None,
            _ => {}
        }
        if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        hex_into(&v[3..35], &mut trace_id)?;
        let mut parent_id = [0u8; 8];
        hex_into(&v[36..52], &mut parent_id)?;
        let flags = hex_u8(&v[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, parent_id, flags })
    }

    /// The `traceparent` a request sent on behalf of span `span_id` of
    /// this trace carries. Always version 00, with only the flags 00 knows.
    pub fn child(&self, span_id: [u8; 8]) -> Self {
        Self { trace_id: self.trace_id, parent_id: span_id, flags: self.flags & SAMPLED }
    }

    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The header value's 55 bytes, written in place: every request sets
    /// one, so it is made without the allocations `Display` would cost.
    pub fn encode(&self) -> [u8; 55] {
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        // The lengths are fixed, so these cannot fail.
        let _ = hex::encode_to_slice(self.trace_id, &mut out[3..35]);
        let _ = hex::encode_to_slice(self.parent_id, &mut out[36..52]);
        let _ = hex::encode_to_slice([self.flags & SAMPLED], &mut out[53..55]);
        out
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encoded = self.encode();
        f.write_str(std::str::from_utf8(&encoded).map_err(|_| fmt::Error)?)
    }
}

/// Decodes `text` into `out`. The spec allows lowercase hex only; the hex
/// crate also reads uppercase, so that is refused first.
fn hex_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.iter().any(u8::is_ascii_uppercase) {
        return None;
    }
    hex::decode_to_slice(text, out).ok()
}

fn hex_u8(pair: &[u8]) -> Option<u8> {
    let mut byte = [0u8];
    hex_into(pair, &mut byte)?;
    Some(byte[0])
}

/// Random ids for a new trace or span; never all zeros, which the spec
/// reserves for "invalid".
pub fn random_trace_id() -> [u8; 16] {
    random_nonzero()
}

pub fn random_span_id() -> [u8; 8] {
    random_nonzero()
}

/// From the thread's CSPRNG (rand's `ThreadRng`: ChaCha seeded from the
/// operating system and reseeded by it), not a `getrandom` system call per
/// id: a request makes up to three ids, and the calls were 1% of the hello
/// benchmark's CPU.
fn random_nonzero<const N: usize>() -> [u8; N] {
    let mut id = [0u8; N];
    let mut rng = rand::rng();
    while id == [0u8; N] {
        rng.fill(&mut id);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_round_trips() {
        let tp = TraceParent::parse(VALID).unwrap();
        assert_eq!(tp.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(tp.parent_id), "00f067aa0ba902b7");
        assert!(tp.sampled());
        assert_eq!(tp.to_string(), VALID);
        assert_eq!(&tp.encode()[..], VALID.as_bytes());
    }

    #[test]
    fn encoding_writes_version_00_with_only_its_flag() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-extra";
        let tp = TraceParent::parse(later).unwrap();
        assert_eq!(&tp.encode()[..], b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let unsampled = TraceParent { flags: 0x02, ..tp };
        assert_eq!(unsampled.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    }

    #[test]
    fn the_spec_s_invalid_values_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            // Uppercase hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            // All-zero ids.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Version ff, and version 00 with trailing data.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // Wrong separators, non-hex.
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_as_00() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-whatever";
        let tp = TraceParent::parse(later).unwrap();
        assert_eq!(tp.flags, 0x03);
        // Passed on as version 00, with only the flags 00 defines.
        assert_eq!(tp.child([1; 8]).to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-0101010101010101-01");
        assert_eq!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"), None);
    }

    #[test]
    fn random_ids_are_valid() {
        assert_ne!(random_trace_id(), [0; 16]);
        assert_ne!(random_span_id(), random_span_id());
    }
}
