//! Poem dates: the common written forms, parsed once at load time into a
//! value that sorts chronologically (with [`jiff`]).
//!
//! Accepted, tried in this order:
//! - ISO 8601 / RFC 3339 date-times with an offset (`2021-01-05T10:00:00Z`,
//!   `…+01:00`): the instant they name;
//! - ISO 8601 date-times without an offset (`2021-01-05T10:00`,
//!   `2021-01-05 10:00:00`) and dates (`2021-01-05`): read as UTC;
//! - RFC 2822 (`Tue, 5 Jan 2021 10:00:00 +0000`);
//! - `M/D/YYYY` (`1/5/2021` is 5 January), the original system's US form.
//!   When both numbers could be a month, the date is *ambiguous*: it is
//!   still read as month/day, with a warning;
//! - `D Month YYYY` (`5 January 2021`, `5 Jan 2021`) and
//!   `Month D, YYYY` (`January 5, 2021`);
//! - `YYYY-MM` and `YYYY`: the first day of that month or year.
//!
//! Anything else is *unparseable*: warned about, and the poem has no
//! parsed date.

use std::fmt;

use jiff::civil::{Date, DateTime};
use jiff::Timestamp;

/// A parsed date: seconds since 1970-01-01 UTC, so dates, date-times and
/// years from any of the accepted forms compare with one another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParsedDate(i64);

impl ParsedDate {
    /// The value to sort poems by: seconds since 1970-01-01 UTC.
    pub fn sort_key(self) -> i64 {
        self.0
    }

    fn from_civil(dt: DateTime) -> Option<Self> {
        jiff::tz::TimeZone::UTC
            .to_timestamp(dt)
            .ok()
            .map(|t| ParsedDate(t.as_second()))
    }

    fn from_date(d: Date) -> Option<Self> {
        Self::from_civil(d.to_datetime(jiff::civil::Time::midnight()))
    }
}

impl fmt::Display for ParsedDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Timestamp::from_second(self.0) {
            Ok(t) => write!(f, "{t}"),
            Err(_) => write!(f, "{}s", self.0),
        }
    }
}

/// What reading a date found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateReading {
    /// One reading only.
    Clear(ParsedDate),
    /// `M/D/YYYY` where D could also be a month: read as month/day.
    Ambiguous(ParsedDate),
    /// None of the accepted forms.
    Unparseable,
}

impl DateReading {
    /// The date, ambiguous or not.
    pub fn date(&self) -> Option<ParsedDate> {
        match self {
            DateReading::Clear(d) | DateReading::Ambiguous(d) => Some(*d),
            DateReading::Unparseable => None,
        }
    }
}

/// Reads a date written in any of the accepted forms (see the module docs).
pub fn parse(text: &str) -> DateReading {
    let s = text.trim();
    if let Some((d, ambiguous)) = us_date(s) {
        return match ParsedDate::from_date(d) {
            Some(p) if ambiguous => DateReading::Ambiguous(p),
            Some(p) => DateReading::Clear(p),
            None => DateReading::Unparseable,
        };
    }
    clear(s).map_or(DateReading::Unparseable, DateReading::Clear)
}

fn clear(s: &str) -> Option<ParsedDate> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(ParsedDate(t.as_second()));
    }
    if let Ok(dt) = s.parse::<DateTime>() {
        return ParsedDate::from_civil(dt);
    }
    if let Ok(d) = s.parse::<Date>() {
        return ParsedDate::from_date(d);
    }
    if let Ok(z) = jiff::fmt::rfc2822::parse(s) {
        return Some(ParsedDate(z.timestamp().as_second()));
    }
    for format in ["%d %B %Y", "%d %b %Y", "%B %d, %Y", "%b %d, %Y", "%B %d %Y", "%b %d %Y"] {
        if let Ok(d) = jiff::fmt::strtime::parse(format, s).and_then(|t| t.to_date()) {
            return ParsedDate::from_date(d);
        }
    }
    year_month(s)
}

/// `YYYY-MM` or `YYYY`: the first day of that month or year.
fn year_month(s: &str) -> Option<ParsedDate> {
    let number = |p: &str, len: usize| -> Option<i16> {
        (p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse().ok())
            .flatten()
    };
    let (year, month) = match s.split_once('-') {
        Some((y, m)) => (number(y, 4)?, number(m, 2)?),
        None => (number(s, 4)?, 1),
    };
    ParsedDate::from_date(Date::new(year, month as i8, 1).ok()?)
}

/// `M/D/YYYY` (one or two digits each), with whether `D` could be a month.
fn us_date(s: &str) -> Option<(Date, bool)> {
    let mut parts = s.split('/');
    let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |p: &str, max: usize| !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some() || !digits(m, 2) || !digits(d, 2) || y.len() != 4 || !digits(y, 4) {
        return None;
    }
    let (m, d, y): (i8, i8, i16) = (m.parse().ok()?, d.parse().ok()?, y.parse().ok()?);
    let date = Date::new(y, m, d).ok()?;
    Some((date, d <= 12 && d != m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> i64 {
        parse(s)
            .date()
            .unwrap_or_else(|| panic!("{s:?} did not parse"))
            .sort_key()
    }

    #[test]
    fn the_common_forms_name_the_same_day() {
        let day = key("2021-01-05");
        for s in [
            "2021-01-05T00:00:00Z",
            "2021-01-05T00:00:00",
            "2021-01-05 00:00:00",
            "2021-01-05T01:00:00+01:00",
            "Tue, 5 Jan 2021 00:00:00 +0000",
            "1/5/2021",
            "01/05/2021",
            "5 January 2021",
            "5 Jan 2021",
            "January 5, 2021",
            " January 5 2021 ",
        ] {
            assert_eq!(key(s), day, "{s}");
        }
        assert_eq!(key("2021"), key("2021-01-01"));
        assert_eq!(key("2021-03"), key("2021-03-01"));
        assert_eq!(key("2021-01-05T10:30:00Z") - day, 10 * 3600 + 30 * 60);
    }

    #[test]
    fn us_dates_are_month_first_and_ambiguity_is_flagged() {
        assert!(matches!(parse("1/5/2021"), DateReading::Ambiguous(_)));
        assert!(matches!(parse("1/13/2021"), DateReading::Clear(_)));
        assert!(matches!(parse("5/5/2021"), DateReading::Clear(_)));
        assert_eq!(parse("13/1/2021"), DateReading::Unparseable);
        // The string order put "1/5/2021" before "10/1/2020".
        assert!(key("10/1/2020") < key("1/5/2021"));
    }

    #[test]
    fn nonsense_is_unparseable() {
        for s in [
            "",
            "soon",
            "2021-02-30",
            "32 January 2021",
            "1/2/21",
            "20210105x",
            "Smarch 3, 2020",
        ] {
            assert_eq!(parse(s), DateReading::Unparseable, "{s:?}");
        }
    }
}
