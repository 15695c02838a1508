//! Age calculation (RFC 9111 §4.2.3, `Age` field §5.1).
//!
//! All subtractions saturate at zero, so clock skew (a `Date` in the future,
//! `now` before `response_time`, a response received "before" its request)
//! never panics and never produces a negative age.

use std::time::{Duration, SystemTime};

use http::header::{AGE, DATE};
use http::HeaderMap;

use super::{header_date, parse_delta_seconds, secs, split_list};

/// The inputs of the age calculation of RFC 9111 §4.2.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeInputs {
    /// When the request that produced the stored response was sent.
    pub request_time: SystemTime,
    /// When the response was received.
    pub response_time: SystemTime,
    /// The response's `Date` (`date_value`), if present and valid.
    pub date: Option<SystemTime>,
    /// The response's `Age` (`age_value`, §5.1), if present and valid.
    pub age_header: Option<u64>,
}

impl AgeInputs {
    /// Reads `Date` and `Age` from a response (RFC 9111 §4.2.3, §5.1).
    ///
    /// `Age`: a list-valued field uses its first member; an invalid value is
    /// ignored (§5.1); overflow saturates at 2^31 (§1.2.2). An invalid
    /// `Date` is treated as absent (RFC 9110 §6.6.1).
    pub fn from_response(headers: &HeaderMap, request_time: SystemTime, response_time: SystemTime) -> Self {
        let age_header = headers.get(AGE).and_then(|value| {
            let line = String::from_utf8_lossy(value.as_bytes());
            split_list(&line).first().and_then(|m| parse_delta_seconds(m))
        });
        Self { request_time, response_time, date: header_date(headers, &DATE), age_header }
    }

    /// `corrected_initial_age` of RFC 9111 §4.2.3:
    ///
    /// ```text
    /// apparent_age          = max(0, response_time - date_value)
    /// response_delay        = response_time - request_time
    /// corrected_age_value   = age_value + response_delay
    /// corrected_initial_age = max(apparent_age, corrected_age_value)
    /// ```
    ///
    /// A missing `Date` gives an apparent age of zero.
    pub fn corrected_initial_age(&self) -> Duration {
        let apparent_age = self.date.map_or(Duration::ZERO, |date| since(self.response_time, date));
        let response_delay = since(self.response_time, self.request_time);
        let age_value = secs(self.age_header.unwrap_or(0));
        let corrected_age_value = age_value.saturating_add(response_delay);
        apparent_age.max(corrected_age_value)
    }

    /// `current_age = corrected_initial_age + resident_time`, where
    /// `resident_time = now - response_time` (RFC 9111 §4.2.3).
    pub fn current_age(&self, now: SystemTime) -> Duration {
        current_age(self.corrected_initial_age(), self.response_time, now)
    }
}

/// `current_age = corrected_initial_age + resident_time`, where
/// `resident_time = now - response_time` (RFC 9111 §4.2.3), from an already computed
/// `corrected_initial_age` (as a kept `policy::Reading` holds it).
pub fn current_age(corrected_initial_age: Duration, response_time: SystemTime, now: SystemTime) -> Duration {
    corrected_initial_age.saturating_add(since(now, response_time))
}

/// `later - earlier`, saturating at zero when the clock went backwards.
fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::super::{test_headers, test_time as t, MAX_DELTA_SECONDS};
    use super::*;

    #[test]
    fn from_response_table() {
        let date = httpdate::fmt_http_date(t(-5));
        type Row<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<SystemTime>, Option<u64>);
        let rows: Vec<Row> = vec![
            ("§4.2.3 Date and Age read", vec![("date", &date), ("age", "30")], Some(t(-5)), Some(30)),
            ("§4.2.3 missing Date and Age", vec![], None, None),
            ("RFC 9110 §6.6.1 invalid Date ignored", vec![("date", "not a date")], None, None),
            ("§5.1 invalid Age ignored", vec![("age", "-3")], None, None),
            ("§5.1 non-numeric Age ignored", vec![("age", "abc")], None, None),
            ("§5.1 list-valued Age uses first member", vec![("age", "12, 99")], None, Some(12)),
            (
                "§1.2.2 overflowing Age saturates at 2^31",
                vec![("age", "123456789012345678901234567890")],
                None,
                Some(MAX_DELTA_SECONDS),
            ),
        ];
        for (name, pairs, want_date, want_age) in rows {
            let inputs = AgeInputs::from_response(&test_headers(&pairs), t(-1), t(0));
            assert_eq!(inputs.date, want_date, "{name}");
            assert_eq!(inputs.age_header, want_age, "{name}");
            assert_eq!((inputs.request_time, inputs.response_time), (t(-1), t(0)));
        }
    }

    #[test]
    fn age_table() {
        // (name, request_time, response_time, date, age header, now, corrected_initial_age, current_age)
        type Row = (&'static str, i64, i64, Option<i64>, Option<u64>, i64, u64, u64);
        let rows: &[Row] = &[
            ("§4.2.3 no Date, no Age, instant response", 0, 0, None, None, 0, 0, 0),
            ("§4.2.3 resident time adds up", 0, 0, Some(0), None, 50, 0, 50),
            ("§4.2.3 apparent age from Date", 0, 0, Some(-20), None, 10, 20, 30),
            ("§4.2.3 Age header counted", 0, 0, Some(0), Some(100), 0, 100, 100),
            ("§4.2.3 response delay added to Age", -3, 0, Some(0), Some(10), 0, 13, 13),
            ("§4.2.3 response delay alone", -3, 0, None, None, 2, 3, 5),
            ("§4.2.3 max(apparent, corrected age value)", -1, 0, Some(-60), Some(10), 0, 60, 60),
            ("§4.2.3 Date in the future (clock skew) clamps to zero", 0, 0, Some(500), None, 5, 0, 5),
            ("§4.2.3 now before response_time saturates", 0, 0, Some(-10), None, -100, 10, 10),
            ("§4.2.3 response before request saturates", 5, 0, None, Some(7), 0, 7, 7),
        ];
        for &(name, req, resp, date, age, now, initial, current) in rows {
            let inputs = AgeInputs {
                request_time: t(req),
                response_time: t(resp),
                date: date.map(t),
                age_header: age,
            };
            assert_eq!(inputs.corrected_initial_age(), secs(initial), "{name}");
            assert_eq!(inputs.current_age(t(now)), secs(current), "{name}");
        }
    }

    #[test]
    fn extreme_times_do_not_panic() {
        let inputs = AgeInputs {
            request_time: SystemTime::UNIX_EPOCH,
            response_time: t(0),
            date: Some(SystemTime::UNIX_EPOCH),
            age_header: Some(MAX_DELTA_SECONDS),
        };
        assert!(inputs.current_age(t(10)) >= secs(MAX_DELTA_SECONDS));
        assert!(inputs.current_age(SystemTime::UNIX_EPOCH) >= secs(MAX_DELTA_SECONDS));
    }
}
