//! The per-request INFO line, formatted by hand. Through tracing's fmt layer it cost about
//! 12,000 instructions per request (13% of a pass-through request under callgrind): field
//! visitors, `Debug` quoting and a timestamp formatted from scratch each time. This writes the
//! same bytes as that layer's plain-text format, with the timestamp's date and time reused
//! within a second. Terminals (ANSI colours) and `--log-format json` keep the tracing path.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::batched::LineWriter;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the hand-formatted line on: only for the plain-text format without colours.
pub(super) fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether [`write`] may be used instead of a tracing event.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// What one request line says.
pub struct RequestLine<'a> {
    /// Request method.
    pub method: &'a str,
    /// Request target as received.
    pub target: &'a dyn std::fmt::Display,
    /// How the request reached the proxy.
    pub mode: &'a str,
    /// Response status.
    pub status: u16,
    /// Cache result.
    pub cache: &'a str,
    /// Response body length, when known.
    pub bytes: Option<u64>,
    /// Time to the response head, in microseconds.
    pub us: u64,
}

thread_local! {
    /// The line being built, and the formatted date-time of the last second seen.
    static SCRATCH: RefCell<(Vec<u8>, u64, [u8; 19])> = const { RefCell::new((Vec::new(), u64::MAX, [0; 19])) };
}

/// Writes the line, as `tracing::info!` with the same fields would in the text format.
pub fn write(line: &RequestLine<'_>) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    SCRATCH.with_borrow_mut(|(buf, cached_sec, date)| {
        buf.clear();
        if *cached_sec != now.as_secs() {
            *cached_sec = now.as_secs();
            *date = date_time(now.as_secs());
        }
        buf.extend_from_slice(date);
        let mut micros = itoa::Buffer::new();
        let micros = micros.format(now.subsec_micros() + 1_000_000);
        buf.push(b'.');
        buf.extend_from_slice(&micros.as_bytes()[1..]);
        buf.extend_from_slice(b"Z  INFO httpcache_proxy::proxy::service: request method=");
        buf.extend_from_slice(line.method.as_bytes());
        buf.extend_from_slice(b" target=");
        let _ = write!(buf, "{}", line.target);
        buf.extend_from_slice(b" mode=\"");
        buf.extend_from_slice(line.mode.as_bytes());
        buf.extend_from_slice(b"\" status=");
        buf.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
        buf.extend_from_slice(b" cache=\"");
        buf.extend_from_slice(line.cache.as_bytes());
        buf.push(b'"');
        if let Some(bytes) = line.bytes {
            buf.extend_from_slice(b" bytes=");
            buf.extend_from_slice(itoa::Buffer::new().format(bytes).as_bytes());
        }
        buf.extend_from_slice(b" us=");
        buf.extend_from_slice(itoa::Buffer::new().format(line.us).as_bytes());
        buf.push(b'\n');
        let _ = LineWriter::batched().write_all(buf);
    });
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time (UTC), by Howard Hinnant's `civil_from_days`.
fn date_time(unix_secs: u64) -> [u8; 19] {
    let days = (unix_secs / 86_400) as i64;
    let secs_of_day = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = [0u8; 19];
    let mut cursor = std::io::Cursor::new(&mut out[..]);
    let _ = write!(
        cursor,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_across_leap_days_and_centuries() {
        let cases = [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (951_868_799, "2000-02-29T23:59:59"),
            (1_709_164_800, "2024-02-29T00:00:00"),
            (1_735_689_599, "2024-12-31T23:59:59"),
            (4_102_444_799, "2099-12-31T23:59:59"),
            (4_107_542_400, "2100-03-01T00:00:00"),
        ];
        for (secs, expected) in cases {
            assert_eq!(std::str::from_utf8(&date_time(secs)).unwrap(), expected, "{secs}");
        }
    }
}
