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
    rfc3339_text(unix_micros, fraction_digits)
        .as_str()
        .to_owned()
}

/// [`rfc3339`] as text kept inline: no allocation (a sink that writes the time into its own
/// output copies it from here).
pub fn rfc3339_text(unix_micros: i64, fraction_digits: u32) -> AsciiText {
    let secs = unix_micros.div_euclid(1_000_000);
    let micros = unix_micros.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let digits = fraction_digits.min(6);
    let fraction = micros / 10_i64.pow(6 - digits);
    // Written digit by digit on the stack: this runs once per delivered event.
    let mut text = AsciiText::default();
    if y < 0 {
        // Never a real event's time: as `format!("{y:04}")` writes it, sign within the width.
        text.byte(b'-');
        text.number(y.unsigned_abs(), 3);
    } else {
        // Years past 9999 keep all their digits.
        text.number(y.unsigned_abs(), 4);
    }
    text.byte(b'-');
    text.number(u64::from(m), 2);
    text.byte(b'-');
    text.number(u64::from(d), 2);
    text.byte(b'T');
    text.number(rem.unsigned_abs() / 3600, 2);
    text.byte(b':');
    text.number(rem.unsigned_abs() % 3600 / 60, 2);
    text.byte(b':');
    text.number(rem.unsigned_abs() % 60, 2);
    if digits > 0 {
        text.byte(b'.');
        text.number(fraction.unsigned_abs(), digits as usize);
    }
    text.byte(b'Z');
    text
}

/// Short ASCII text kept inline (no allocation): an RFC 3339 timestamp's ([`rfc3339_text`]), or
/// other short text a sink makes (a hex id).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct AsciiText {
    /// `-YYYYYY-MM-DDTHH:MM:SS.ffffffZ` at the longest time (a year of any `i64` microseconds
    /// has at most six digits).
    bytes: [u8; 32],
    len: u8,
}

impl AsciiText {
    /// `text`, which must be ASCII: at most 32 bytes are kept.
    pub fn new(text: &[u8]) -> Self {
        debug_assert!(text.is_ascii() && text.len() <= 32, "short ASCII text");
        let mut kept = Self::default();
        let len = text.len().min(kept.bytes.len());
        kept.bytes[..len].copy_from_slice(&text[..len]);
        kept.len = u8::try_from(len).unwrap_or(u8::MAX);
        kept
    }

    /// The text's bytes (ASCII), without the check [`Self::as_str`] makes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written (checked in debug builds).
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    fn byte(&mut self, b: u8) {
        debug_assert!(
            usize::from(self.len) < self.bytes.len(),
            "an RFC 3339 time fits"
        );
        if let Some(slot) = self.bytes.get_mut(usize::from(self.len)) {
            *slot = b;
            self.len += 1;
        }
    }

    /// The decimal digits of `n`, zero-padded to at least `width`.
    fn number(&mut self, n: u64, width: usize) {
        let mut digits = [0u8; 20];
        let mut count = 0;
        let mut rest = n;
        while count < width || rest > 0 {
            digits[count] = b'0' + (rest % 10) as u8;
            rest /= 10;
            count += 1;
        }
        for &digit in digits[..count].iter().rev() {
            self.byte(digit);
        }
    }
}

impl std::fmt::Debug for AsciiText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for AsciiText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
        assert_eq!(
            rfc3339(i64::MIN, 6),
            format!("{}", rfc3339_text(i64::MIN, 6)),
            "the earliest time fits"
        );
        for days in [-800_000, -1, 0, 1, 11_016, 20_235, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), days);
        }
    }

    /// The digits as the general formatter writes them, for years of any sign and length.
    #[test]
    fn every_year_is_written_as_the_formatter_writes_it() {
        for days in [
            -106_751_991,
            -800_000,
            -719_529,
            -719_528,
            -700_000,
            -1,
            0,
            2_932_896,
            2_932_897,
            106_751_990,
        ] {
            let micros = days * 86_400_000_000 + 45_296_789_012;
            let (y, m, d) = civil_from_days(days);
            let expected = format!("{y:04}-{m:02}-{d:02}T12:34:56.789012Z");
            assert_eq!(rfc3339(micros, 6), expected, "{days}");
            assert_eq!(rfc3339_text(micros, 6).as_str(), expected, "{days}");
            let seconds = format!("{y:04}-{m:02}-{d:02}T12:34:56Z");
            assert_eq!(rfc3339_text(micros, 0).as_str(), seconds, "{days}");
            let millis = format!("{y:04}-{m:02}-{d:02}T12:34:56.789Z");
            assert_eq!(rfc3339_text(micros, 3).as_str(), millis, "{days}");
        }
    }

    #[test]
    fn ascii_text_keeps_short_text_inline() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(AsciiText::new(id.as_bytes()).as_str(), id);
        assert_eq!(AsciiText::new(b"").as_str(), "");
        assert_eq!(
            AsciiText::new(b"2025-05-27T20:16:56.000Z"),
            rfc3339_text(1_748_377_016_000_000, 3)
        );
    }
}
