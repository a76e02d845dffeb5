//! Sandbox time: the wall clock at start, running `speed` times faster, plus manual jumps.
//!
//! Everything Stark does on a schedule (payment delays, due dates, the 5/30/120-minute webhook
//! retries) is measured on this one clock, so a test can watch hours of behaviour in seconds.
//! It is built on `tokio::time::Instant` so that a test using `tokio::time::pause` moves it too.

use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;
use tokio::time::Instant;

/// The sandbox clock.
#[derive(Debug)]
pub struct Clock {
    /// Real instant the clock started; elapsed real time is measured from here.
    started: Instant,
    /// Sandbox time at `started` (the wall clock then, so timestamps look current).
    origin: OffsetDateTime,
    /// Sandbox seconds per real second.
    speed: f64,
    /// Sum of manual jumps, so that tests can reach an expiration without waiting for it.
    jumped: Mutex<Duration>,
}

impl Clock {
    /// Starts a clock at the current wall-clock time.
    pub fn new(speed: f64) -> Self {
        Self {
            started: Instant::now(),
            origin: OffsetDateTime::now_utc(),
            speed,
            jumped: Mutex::new(Duration::ZERO),
        }
    }

    /// Current sandbox time.
    pub fn now(&self) -> OffsetDateTime {
        let real = self.started.elapsed().as_secs_f64() * self.speed;
        let jumped = *self.jumped.lock().unwrap_or_else(|e| e.into_inner());
        self.origin + Duration::from_secs_f64(real) + jumped
    }

    /// Moves sandbox time forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.jumped.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }

    /// Real time left until sandbox time reaches `at` (zero if it has).
    pub fn real_until(&self, at: OffsetDateTime) -> Duration {
        let left = at - self.now();
        if left.is_negative() {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(left.as_seconds_f64() / self.speed)
    }

    /// Converts a sandbox duration to real time.
    pub fn to_real(&self, sandbox: Duration) -> Duration {
        Duration::from_secs_f64(sandbox.as_secs_f64() / self.speed)
    }
}

const TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+00:00");
const DATE: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]");
const NAIVE: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]");

/// Formats as Stark does, `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`: the only shapes the Python SDK
/// parses are this one, the same without fraction, and a bare date.
pub fn timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(TIMESTAMP)
        .unwrap_or_default()
}

/// `YYYY-MM-DD`.
pub fn date_string(date: time::Date) -> String {
    date.format(DATE).unwrap_or_default()
}

/// A `due` or `scheduled` value: an instant, or a whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOrTime {
    /// A date (`YYYY-MM-DD`).
    Date(time::Date),
    /// A datetime, normalized to UTC.
    Time(OffsetDateTime),
}

impl DateOrTime {
    /// The instant a date stands for when it marks an end (a due date): the last microsecond of
    /// that day in UTC.
    pub fn end(self) -> OffsetDateTime {
        match self {
            DateOrTime::Time(t) => t,
            DateOrTime::Date(d) => {
                (d.midnight() + time::Duration::DAY - time::Duration::MICROSECOND).assume_utc()
            }
        }
    }

    /// The instant a date stands for when it marks a start (a scheduled transfer): midnight UTC.
    pub fn start(self) -> OffsetDateTime {
        match self {
            DateOrTime::Time(t) => t,
            DateOrTime::Date(d) => d.midnight().assume_utc(),
        }
    }

    /// The UTC calendar day.
    pub fn date(self) -> time::Date {
        match self {
            DateOrTime::Time(t) => t.date(),
            DateOrTime::Date(d) => d,
        }
    }
}

/// Parses what the SDKs send: RFC 3339 with an offset (`…+00:00`, `…Z`), a naive datetime (taken
/// as UTC, as Python does), or a date.
pub fn parse_date_or_time(text: &str) -> Option<DateOrTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Some(DateOrTime::Time(t.to_offset(time::UtcOffset::UTC)));
    }
    if let Ok(t) = time::PrimitiveDateTime::parse(text, NAIVE) {
        return Some(DateOrTime::Time(t.assume_utc()));
    }
    parse_date(text).map(DateOrTime::Date)
}

/// Parses `YYYY-MM-DD` (the `after` and `before` filters).
pub fn parse_date(text: &str) -> Option<time::Date> {
    time::Date::parse(text, DATE).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_like_stark() {
        assert_eq!(
            timestamp(datetime!(2024-02-29 05:00:12.051456 UTC)),
            "2024-02-29T05:00:12.051456+00:00"
        );
        assert_eq!(
            timestamp(datetime!(2024-02-29 05:00:12 UTC)),
            "2024-02-29T05:00:12.000000+00:00"
        );
        assert_eq!(
            timestamp(datetime!(2024-02-29 02:00:00 -3)),
            "2024-02-29T05:00:00.000000+00:00"
        );
    }

    #[test]
    fn parses_sdk_values() {
        let t = parse_date_or_time("2030-01-02T03:04:05+00:00").unwrap();
        assert_eq!(t, DateOrTime::Time(datetime!(2030-01-02 03:04:05 UTC)));
        assert_eq!(
            parse_date_or_time("2030-01-02T03:04:05.5Z").unwrap().date(),
            time::macros::date!(2030 - 01 - 02)
        );
        assert_eq!(
            parse_date_or_time("2030-01-02T03:04:05").unwrap().end(),
            datetime!(2030-01-02 03:04:05 UTC)
        );
        let d = parse_date_or_time("2030-01-02").unwrap();
        assert_eq!(d.end(), datetime!(2030-01-02 23:59:59.999999 UTC));
        assert_eq!(d.start(), datetime!(2030-01-02 00:00:00 UTC));
        assert!(parse_date_or_time("tomorrow").is_none());
        assert!(parse_date_or_time("2030-13-01").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn runs_at_speed_and_jumps() {
        let clock = Clock::new(600.0);
        let t0 = clock.now();
        tokio::time::advance(Duration::from_secs(1)).await;
        let elapsed = clock.now() - t0;
        assert!((elapsed.as_seconds_f64() - 600.0).abs() < 1.0, "{elapsed}");
        clock.advance(Duration::from_secs(3600));
        assert!((clock.now() - t0).as_seconds_f64() >= 4200.0);
        assert_eq!(clock.real_until(t0), Duration::ZERO);
        let later = clock.now() + time::Duration::seconds(60);
        assert!((clock.real_until(later).as_secs_f64() - 0.1).abs() < 0.01);
    }
}
