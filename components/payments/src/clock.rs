//! Wall-clock time, as the shop records it (Unix milliseconds), and the
//! calendar month a card's expiry is compared with.
use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// The UTC `(year, month)` of a Unix time in milliseconds, month 1..=12.
///
/// Howard Hinnant's `civil_from_days`: exact for every date in the
/// proleptic Gregorian calendar, without a calendar crate for one lookup.
pub fn year_month(unix_ms: i64) -> (i64, u32) {
    let days = unix_ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn year_month_of_known_instants() {
        assert_eq!(year_month(0), (1970, 1));
        // 2024-02-29T23:59:59.999Z and the next millisecond.
        assert_eq!(year_month(1_709_251_199_999), (2024, 2));
        assert_eq!(year_month(1_709_251_200_000), (2024, 3));
        // 2000-12-31T12:00:00Z.
        assert_eq!(year_month(978_264_000_000), (2000, 12));
        assert_eq!(year_month(-1), (1969, 12));
    }
}
