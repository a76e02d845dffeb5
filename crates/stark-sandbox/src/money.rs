//! Integer-cent arithmetic for fines, interest and discounts.
//!
//! Percentages arrive as JSON floats (`10.5`), but money never becomes a float: the percentage is
//! turned into an integer number of millionths of a percent once, and every amount is computed
//! in `i128` with half-up rounding. That reproduces Stark's observed result (10.5 % of 4100 =
//! 430.5 → 431, docs/stark-api.md, "Invoices").

/// Millionths of a percent, so that `percent * 1e6` fits comfortably in `i128`.
fn micro_percent(percent: f64) -> i128 {
    (percent * 1_000_000.0).round() as i128
}

/// Divides rounding half away from zero (amounts here are never negative).
fn div_half_up(numerator: i128, denominator: i128) -> i64 {
    let q = (numerator.abs() + denominator / 2) / denominator;
    let q = if numerator < 0 { -q } else { q };
    i64::try_from(q).unwrap_or(i64::MAX)
}

/// `percent` % of `cents`, rounded half up to a cent.
pub fn percent_of(cents: i64, percent: f64) -> i64 {
    div_half_up(i128::from(cents) * micro_percent(percent), 100_000_000)
}

/// Interest of `monthly_percent` % a month over `days` days, pro rata on a 30-day month.
pub fn interest_for_days(cents: i64, monthly_percent: f64, days: i64) -> i64 {
    div_half_up(
        i128::from(cents) * micro_percent(monthly_percent) * i128::from(days),
        100_000_000 * 30,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_like_stark() {
        assert_eq!(percent_of(4100, 10.5), 431);
        assert_eq!(percent_of(10_000, 2.0), 200);
        assert_eq!(percent_of(333, 0.1), 0);
        assert_eq!(percent_of(335, 0.15), 1);
        assert_eq!(percent_of(0, 50.0), 0);
    }

    #[test]
    fn interest_is_pro_rata_per_day() {
        assert_eq!(interest_for_days(10_000, 1.0, 30), 100);
        assert_eq!(interest_for_days(10_000, 1.0, 15), 50);
        assert_eq!(interest_for_days(10_000, 1.0, 0), 0);
        assert_eq!(interest_for_days(12_345, 1.0, 1), 4);
    }
}
