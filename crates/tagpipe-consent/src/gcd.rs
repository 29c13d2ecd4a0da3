//! Google's `gcd` consent string (`x-ga-gcd`), e.g. `13r3r3r3r5`: a version character, four
//! (digit, letter) pairs for `ad_storage`, `analytics_storage`, `ad_user_data`,
//! `ad_personalization`, then trailing characters. The letter's index `i` in
//! `0-9a-zA-Z-_` holds a default state `(i >> 2) & 3` and an update state `i & 3`, each
//! `1` = not set, `2` = denied, `3` = granted; the effective state is the update when set, else
//! the default.
//!
//! | letter | default → update | effective |
//! |---|---|---|
//! | `l` | not set → not set | not set |
//! | `m` | not set → denied | denied |
//! | `n` | not set → granted | granted |
//! | `p` | denied → not set | denied |
//! | `q` | denied → denied | denied |
//! | `r` | denied → granted | granted |
//! | `t` | granted → not set | granted |
//! | `u` | granted → denied | denied |
//! | `v` | granted → granted | granted |

/// One purpose's state in a `gcd` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No signal for this purpose.
    NotSet,
    /// Denied.
    Denied,
    /// Granted.
    Granted,
}

fn two_bits(v: u8) -> State {
    match v {
        2 => State::Denied,
        3 => State::Granted,
        _ => State::NotSet,
    }
}

/// The effective state encoded by one letter; `None` for a character outside the alphabet.
pub fn letter(c: u8) -> Option<State> {
    // The letter's index in `0-9a-zA-Z-_`.
    let i = match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'z' => c - b'a' + 10,
        b'A'..=b'Z' => c - b'A' + 36,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    };
    let default = two_bits((i >> 2) & 3);
    let update = two_bits(i & 3);
    Some(if update == State::NotSet {
        default
    } else {
        update
    })
}

/// The state of purpose `index` (0 = ad_storage … 3 = ad_personalization) in `gcd`;
/// `None` when the string is too short or malformed there.
pub fn purpose(gcd: &str, index: usize) -> Option<State> {
    let bytes = gcd.as_bytes();
    // Skip the version character; pairs follow.
    let letter_at = 1 + index * 2 + 1;
    let digit_at = letter_at - 1;
    if !bytes.get(digit_at)?.is_ascii_digit() {
        return None;
    }
    letter(*bytes.get(letter_at)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_letter_table() {
        let table = [
            (b'l', State::NotSet),
            (b'm', State::Denied),
            (b'n', State::Granted),
            (b'p', State::Denied),
            (b'q', State::Denied),
            (b'r', State::Granted),
            (b't', State::Granted),
            (b'u', State::Denied),
            (b'v', State::Granted),
        ];
        for (c, expected) in table {
            assert_eq!(letter(c), Some(expected), "letter {}", c as char);
        }
        assert_eq!(letter(b'!'), None);
    }

    #[test]
    fn purposes_in_a_string() {
        let gcd = "13r3p3v3l5";
        assert_eq!(purpose(gcd, 0), Some(State::Granted));
        assert_eq!(purpose(gcd, 1), Some(State::Denied));
        assert_eq!(purpose(gcd, 2), Some(State::Granted));
        assert_eq!(purpose(gcd, 3), Some(State::NotSet));
        assert_eq!(purpose("1", 0), None);
        assert_eq!(purpose("1xr", 0), None, "a pair starts with a digit");
        assert_eq!(purpose("13l3l3l3l1l1", 0), Some(State::NotSet));
    }
}
