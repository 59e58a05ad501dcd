//! Postgres `numeric` in its binary wire format, to and from base-10 text.
//!
//! The 4.0.0 interface carries decimals as strings ("I admit defeat. Base
//! 10"), so the host never needs a fixed-precision decimal type: converting
//! the wire format straight to text and back keeps every digit Postgres
//! stores (up to 131072 before the point and 16383 after), `NaN` and
//! `±Infinity` included, where a 96-bit decimal type would fail or round.
//!
//! Wire format: `ndigits: i16, weight: i16, sign: u16, dscale: u16`, then
//! `ndigits` base-10000 digits (`i16`); the value is
//! `Σ digit[i] · 10000^(weight − i)`, shown with `dscale` decimals.
use bytes::{BufMut, BytesMut};

const POSITIVE: u16 = 0x0000;
const NEGATIVE: u16 = 0x4000;
const NAN: u16 = 0xC000;
const PLUS_INFINITY: u16 = 0xD000;
const MINUS_INFINITY: u16 = 0xF000;
/// Postgres's own limit on digits after the point.
const MAX_DSCALE: i64 = 0x3FFF;
/// Postgres's own limit on digits before the point.
const MAX_INTEGER_DIGITS: i64 = 131_072;

/// Decodes a binary `numeric` to the text Postgres itself would print.
pub fn to_string(mut buf: &[u8]) -> Result<String, String> {
    let mut read = |what: &str| -> Result<u16, String> {
        let (head, tail) = buf.split_first_chunk::<2>().ok_or_else(|| format!("numeric: truncated {what}"))?;
        buf = tail;
        Ok(u16::from_be_bytes(*head))
    };
    let ndigits = read("header")? as i16;
    let weight = read("header")? as i16;
    let sign = read("header")?;
    let dscale = read("header")?;
    if ndigits < 0 {
        return Err("numeric: negative digit count".into());
    }
    let digits: Vec<u16> = (0..ndigits).map(|_| read("digits")).collect::<Result<_, _>>()?;
    if digits.iter().any(|d| *d > 9999) {
        return Err("numeric: digit out of range".into());
    }
    let negative = match sign {
        POSITIVE => false,
        NEGATIVE => true,
        NAN => return Ok("NaN".into()),
        PLUS_INFINITY => return Ok("Infinity".into()),
        MINUS_INFINITY => return Ok("-Infinity".into()),
        other => return Err(format!("numeric: unknown sign {other:#06x}")),
    };
    let digit = |i: i32| if i >= 0 && (i as usize) < digits.len() { digits[i as usize] } else { 0 };

    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for i in 0..=i32::from(weight) {
            if i == 0 {
                out.push_str(&digit(i).to_string());
            } else {
                out.push_str(&format!("{:04}", digit(i)));
            }
        }
    }
    let dscale = usize::from(dscale & 0x3FFF);
    if dscale > 0 {
        let mut fraction = String::with_capacity(dscale + 4);
        let mut i = i32::from(weight) + 1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        fraction.truncate(dscale);
        out.push('.');
        out.push_str(&fraction);
    }
    Ok(out)
}

/// Encodes base-10 text (`-12.50`, `1e-3`, `NaN`, `Infinity`) as a binary
/// `numeric`; the number of decimals written is kept as the display scale.
pub fn write(text: &str, buf: &mut BytesMut) -> Result<(), String> {
    let invalid = || format!("{text:?} is not a decimal number");
    let trimmed = text.trim();
    let special = match trimmed.to_ascii_lowercase().as_str() {
        "nan" => Some(NAN),
        "infinity" | "+infinity" | "inf" | "+inf" => Some(PLUS_INFINITY),
        "-infinity" | "-inf" => Some(MINUS_INFINITY),
        _ => None,
    };
    if let Some(sign) = special {
        write_header(buf, 0, 0, sign, 0);
        return Ok(());
    }

    let (negative, unsigned) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => {
            let exponent: i64 = unsigned[at + 1..].parse().map_err(|_| invalid())?;
            (&unsigned[..at], exponent)
        }
        None => (unsigned, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (integer.is_empty() && fraction.is_empty()) || !all_digits(integer) || !all_digits(fraction) {
        return Err(invalid());
    }
    if exponent.abs() > MAX_INTEGER_DIGITS + MAX_DSCALE {
        return Err(format!("{text:?} is out of range for type numeric"));
    }

    let dscale = (fraction.len() as i64 - exponent).max(0);
    if dscale > MAX_DSCALE {
        return Err(format!("{text:?} has more than {MAX_DSCALE} digits after the point"));
    }
    // Significant digits, and how many of them stand before the point.
    let all: Vec<u8> = integer.bytes().chain(fraction.bytes()).map(|b| b - b'0').collect();
    let mut point = integer.len() as i64 + exponent;
    let first = all.iter().position(|d| *d != 0);
    let Some(first) = first else {
        // Zero: no digits, weight 0, positive, with the scale asked for.
        write_header(buf, 0, 0, POSITIVE, dscale as u16);
        return Ok(());
    };
    let last = all.iter().rposition(|d| *d != 0).expect("a non-zero digit exists");
    let significant = &all[first..=last];
    point -= first as i64;
    if point > MAX_INTEGER_DIGITS {
        return Err(format!("{text:?} is out of range for type numeric"));
    }

    // Group into base-10000 digits aligned on the decimal point: the digit
    // at decimal exponent `e` goes to group `e div 4`, position `e mod 4`.
    let weight = (point - 1).div_euclid(4);
    let lowest = (point - significant.len() as i64).div_euclid(4);
    let mut groups = vec![0u16; (weight - lowest + 1) as usize];
    for (j, d) in significant.iter().enumerate() {
        let e = point - 1 - j as i64;
        groups[(weight - e.div_euclid(4)) as usize] += u16::from(*d) * 10u16.pow(e.rem_euclid(4) as u32);
    }
    let weight = i16::try_from(weight).map_err(|_| format!("{text:?} is out of range for type numeric"))?;
    let ndigits = i16::try_from(groups.len()).map_err(|_| format!("{text:?} has too many digits"))?;
    write_header(buf, ndigits, weight, if negative { NEGATIVE } else { POSITIVE }, dscale as u16);
    for group in groups {
        buf.put_u16(group);
    }
    Ok(())
}

fn write_header(buf: &mut BytesMut, ndigits: i16, weight: i16, sign: u16, dscale: u16) {
    buf.put_i16(ndigits);
    buf.put_i16(weight);
    buf.put_u16(sign);
    buf.put_u16(dscale);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        let mut buf = BytesMut::new();
        write(text, &mut buf).unwrap_or_else(|e| panic!("{text}: {e}"));
        to_string(&buf).unwrap()
    }

    #[test]
    fn canonical_text_survives_the_wire_format() {
        for text in [
            "0",
            "0.00",
            "1",
            "-1",
            "9999",
            "10000",
            "12345.6789",
            "-12.50",
            "0.00001",
            "0.1",
            "100000000.000000001",
            "123456789012345678901234567890.123456789012345678901234567890",
            "NaN",
            "Infinity",
            "-Infinity",
        ] {
            assert_eq!(round_trip(text), text);
        }
    }

    #[test]
    fn other_spellings_are_normalised_as_postgres_does() {
        assert_eq!(round_trip("+5"), "5");
        assert_eq!(round_trip("007.50"), "7.50");
        assert_eq!(round_trip(".5"), "0.5");
        assert_eq!(round_trip("5."), "5");
        assert_eq!(round_trip("1e3"), "1000");
        assert_eq!(round_trip("1.5E-3"), "0.0015");
        assert_eq!(round_trip("-0"), "0");
        assert_eq!(round_trip("inf"), "Infinity");
        assert_eq!(round_trip(" 42 "), "42");
    }

    #[test]
    fn the_wire_format_is_postgres_own() {
        // SELECT numeric_send(12345.678): ndigits 3, weight 1, dscale 3,
        // digits 1 2345 6780.
        let mut buf = BytesMut::new();
        write("12345.678", &mut buf).unwrap();
        assert_eq!(&buf[..], &[0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1A, 0x7C]);
        // 0.0001: one digit 1 at weight -1.
        let mut buf = BytesMut::new();
        write("0.0001", &mut buf).unwrap();
        assert_eq!(&buf[..], &[0, 1, 0xFF, 0xFF, 0, 0, 0, 4, 0, 1]);
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in ["", "-", ".", "1.2.3", "1e", "12a", "0x10", "1e999999999"] {
            assert!(write(bad, &mut BytesMut::new()).is_err(), "{bad:?}");
        }
        assert!(to_string(&[0, 1, 0, 0]).is_err());
    }
}
