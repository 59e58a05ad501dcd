//! Wall-clock time, as the contracts speak of it: Unix milliseconds.
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The calendar year and month (1 to 12, UTC) of a Unix time in
/// milliseconds: enough to tell whether a card has expired. Howard
/// Hinnant's `civil_from_days`, valid for any date.
pub fn year_month(ms: i64) -> (i64, u32) {
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March is 0
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, u32::try_from(month).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn year_and_month_of_unix_times() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(1_735_689_600_000), (2025, 1)); // 2025-01-01T00:00Z
        assert_eq!(year_month(1_735_689_599_999), (2024, 12));
        assert_eq!(year_month(1_709_164_800_000), (2024, 2)); // 2024-02-29
        assert_eq!(year_month(951_782_400_000), (2000, 2)); // 2000-02-29
        assert_eq!(year_month(-1), (1969, 12));
    }
}
