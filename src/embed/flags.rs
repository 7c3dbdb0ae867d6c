//! Parse-time checks of `embed`'s flags: every number finite, positive
//! where it must be, and in a sane range, so no flag can panic the run.

use std::time::Duration;

/// Seconds in `0..=hi` (NaN and infinities are outside).
fn seconds(s: &str, hi: f64) -> Result<Duration, String> {
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=hi).contains(&x) {
        return Err(format!("{s} is outside 0..={hi} seconds"));
    }
    Duration::try_from_secs_f64(x).map_err(|e| e.to_string())
}

/// `--timeout`: per request, more than 0 and at most an hour.
pub fn timeout(s: &str) -> Result<Duration, String> {
    positive(s, 3600.0)
}

/// `--backoff`: the first retry's wait, more than 0 and at most a minute.
pub fn backoff(s: &str) -> Result<Duration, String> {
    positive(s, 60.0)
}

/// `--max-wait`: the longest single wait, more than 0 and at most 10 minutes.
pub fn max_wait(s: &str) -> Result<Duration, String> {
    positive(s, 600.0)
}

/// `--give-up-after`: more than 0 and at most a day.
pub fn give_up_after(s: &str) -> Result<Duration, String> {
    positive(s, 86_400.0)
}

/// `--flush-every`: 0 (after every answer) to an hour.
pub fn flush_every(s: &str) -> Result<Duration, String> {
    seconds(s, 3600.0)
}

fn positive(s: &str, hi: f64) -> Result<Duration, String> {
    let d = seconds(s, hi)?;
    if d.is_zero() {
        return Err(format!("{s} must be more than 0 seconds"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_refused_not_panicked_on() {
        for bad in ["nan", "NaN", "inf", "-inf", "1e300", "-1", "0", "", "x", "1e-300"] {
            assert!(timeout(bad).is_err(), "{bad:?} accepted");
        }
        assert!(backoff("inf").is_err());
        assert_eq!(timeout("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(flush_every("0"), Ok(Duration::ZERO));
        assert!(flush_every("-0.5").is_err());
    }
}
