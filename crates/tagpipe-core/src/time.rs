//! UTC calendar arithmetic for RFC 3339 timestamps, without a date-time dependency
//! (H. Hinnant's civil-date algorithms, proleptic Gregorian).

/// Days since 1970-01-01 → (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS.fffZ` (`fraction_digits` = 3) or `….ffffffZ` (6) for a time in
/// microseconds since the epoch. Midnight is hour `00` of its own day.
pub fn rfc3339(unix_micros: i64, fraction_digits: u32) -> String {
    let secs = unix_micros.div_euclid(1_000_000);
    let micros = unix_micros.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let digits = fraction_digits.min(6);
    let fraction = micros / 10_i64.pow(6 - digits);
    // Written digit by digit into a buffer on the stack, then copied once: this runs once per
    // delivered event.
    let mut text = Digits::default();
    if !(0..=9999).contains(&y) {
        // Never a real event's time: the general formatter keeps every digit and the sign.
        text.after_year(m, d, rem, fraction, digits);
        return format!("{y:04}{}", text.text());
    }
    text.number(y, 4);
    text.after_year(m, d, rem, fraction, digits);
    text.text().to_owned()
}

/// A short ASCII text built on the stack.
#[derive(Default)]
struct Digits {
    bytes: [u8; 32],
    len: usize,
}

impl Digits {
    /// `-MM-DDTHH:MM:SS[.f…]Z`.
    fn after_year(&mut self, m: u32, d: u32, rem: i64, fraction: i64, digits: u32) {
        self.byte(b'-');
        self.number(i64::from(m), 2);
        self.byte(b'-');
        self.number(i64::from(d), 2);
        self.byte(b'T');
        self.number(rem / 3600, 2);
        self.byte(b':');
        self.number(rem % 3600 / 60, 2);
        self.byte(b':');
        self.number(rem % 60, 2);
        if digits > 0 {
            self.byte(b'.');
            self.number(fraction, digits);
        }
        self.byte(b'Z');
    }

    fn byte(&mut self, b: u8) {
        // 27 bytes at most: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
        debug_assert!(self.len < self.bytes.len(), "an RFC 3339 time fits");
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// The `width` lowest decimal digits of a non-negative `n`, zero-padded.
    fn number(&mut self, n: i64, width: u32) {
        for place in (0..width).rev() {
            let digit = (n / 10_i64.pow(place)) % 10;
            self.byte(b'0' + digit as u8);
        }
    }

    fn text(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_midnight() {
        assert_eq!(
            rfc3339(1_748_304_000_000_000, 3),
            "2025-05-27T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(1_748_377_016_123_456, 6),
            "2025-05-27T20:16:56.123456Z"
        );
        assert_eq!(rfc3339(951_782_400_000_000, 3), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(-1, 6), "1969-12-31T23:59:59.999999Z");
        assert_eq!(rfc3339(1_748_377_016_123_456, 0), "2025-05-27T20:16:56Z");
        assert_eq!(
            rfc3339(253_402_300_800_000_000, 3),
            "10000-01-01T00:00:00.000Z",
            "years past 9999 keep all their digits"
        );
        for days in [-800_000, -1, 0, 1, 11_016, 20_235, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
        }
    }
}
