//! DynamoDB numbers: parsed from their decimal text into an exact, canonical form.
//!
//! DynamoDB numbers carry up to 38 significant digits with a magnitude from 1E-130 to
//! 9.99…E+125. They never pass through a float here: the digits and a decimal exponent are
//! kept as they are, so every value round-trips exactly.

use crate::text::Text;
use std::fmt;

/// Largest number of significant digits DynamoDB stores.
pub const MAX_DIGITS: usize = 38;

/// 10^0 to 10^38: every power a mantissa of `MAX_DIGITS` digits is scaled by.
const POW10: [u128; MAX_DIGITS + 1] = {
    let mut table = [1u128; MAX_DIGITS + 1];
    let mut i = 1;
    while i <= MAX_DIGITS {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};
/// Exponent of the most significant digit must lie in this range.
const MIN_MAGNITUDE: i32 = -130;
const MAX_MAGNITUDE: i32 = 125;

/// An exact DynamoDB number: `(-1)^negative × digits × 10^exponent`, with `digits` free of
/// leading and trailing zeros (zero is the empty digit string).
///
/// The digits are held as an integer (38 digits fit in 127 bits), split in two halves so
/// the value keeps 8-byte alignment; no number allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Number {
    negative: bool,
    /// Count of significant digits (0 for zero).
    len: u8,
    exponent: i32,
    mantissa_hi: u64,
    mantissa_lo: u64,
}

/// Decimal digits of a mantissa, most significant first, in a stack buffer.
struct Digits {
    buf: [u8; 40],
    start: usize,
}

impl Digits {
    fn as_str(&self) -> &str {
        // Only ASCII digits are ever written into the buffer.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("")
    }
}

/// Why text is not a DynamoDB number; each holds the text, cut to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Not decimal number text.
    #[error("`{0}` is not a number")]
    Syntax(String),
    /// More than `MAX_DIGITS` significant digits.
    #[error("`{0}` has more than 38 significant digits")]
    TooPrecise(String),
    /// A magnitude outside DynamoDB's range.
    #[error("`{0}` is outside DynamoDB's range 1E-130 to 9.99E+125")]
    OutOfRange(String),
}

/// Out of line, so `parse`'s hot path carries no formatting code.
#[cold]
#[inline(never)]
fn number_error(kind: fn(String) -> NumberError, text: &str) -> NumberError {
    kind(text.chars().take(64).collect())
}

impl Number {
    /// One pass over the text: this runs for every number of every record decoded.
    pub fn parse(text: &str) -> Result<Number, NumberError> {
        let syntax = || number_error(NumberError::Syntax, text);
        let bytes = text.trim().as_bytes();
        let (negative, mut at) = match bytes.first() {
            Some(b'-') => (true, 1),
            Some(b'+') => (false, 1),
            _ => (false, 0),
        };
        // Significant digits so far (from the first non-zero one), zeros seen after them
        // that a later non-zero digit would make significant, and their value.
        let mut significant = 0usize;
        let mut zeros = 0usize;
        let mut mantissa: u128 = 0;
        let (mut digits, mut fraction_digits, mut point) = (0usize, 0i64, false);
        while let Some(&b) = bytes.get(at) {
            match b {
                b'0'..=b'9' => {
                    digits += 1;
                    fraction_digits += i64::from(point);
                    if b == b'0' {
                        zeros += usize::from(significant > 0);
                    } else {
                        significant += zeros + 1;
                        if significant <= MAX_DIGITS {
                            mantissa = mantissa * POW10[zeros + 1] + u128::from(b - b'0');
                        }
                        zeros = 0;
                    }
                }
                b'.' if !point => point = true,
                b'e' | b'E' => break,
                _ => return Err(syntax()),
            }
            at += 1;
        }
        if digits == 0 {
            return Err(syntax());
        }
        let mut exponent: i64 = match bytes.get(at) {
            None => 0,
            Some(_) => {
                let e = &bytes[at + 1..];
                let unsigned = e.strip_prefix(b"+").or_else(|| e.strip_prefix(b"-")).unwrap_or(e);
                if unsigned.is_empty() || unsigned.len() > 6 || !unsigned.iter().all(u8::is_ascii_digit) {
                    return Err(syntax());
                }
                let value = unsigned.iter().fold(0i64, |v, d| v * 10 + i64::from(d - b'0'));
                if e[0] == b'-' {
                    -value
                } else {
                    value
                }
            }
        };
        if significant == 0 {
            return Ok(Number::ZERO);
        }
        if significant > MAX_DIGITS {
            return Err(number_error(NumberError::TooPrecise, text));
        }
        // Zeros after the last significant digit scale it instead.
        exponent += zeros as i64 - fraction_digits;
        let magnitude = exponent + significant as i64 - 1;
        if magnitude < MIN_MAGNITUDE as i64 || magnitude > MAX_MAGNITUDE as i64 {
            return Err(number_error(NumberError::OutOfRange, text));
        }
        Ok(Number {
            negative,
            len: significant as u8,
            exponent: exponent as i32,
            mantissa_hi: (mantissa >> 64) as u64,
            mantissa_lo: mantissa as u64,
        })
    }

    /// Sign, digit count, exponent and digits: the number's whole state, for packing.
    pub(crate) fn to_parts(self) -> (bool, u8, i32, u128) {
        (self.negative, self.len, self.exponent, self.mantissa())
    }

    /// The inverse of `to_parts`; `None` unless the parts are a canonical number (digits
    /// counted right, no trailing zero, within DynamoDB's precision and range).
    pub(crate) fn from_parts(negative: bool, len: u8, exponent: i32, mantissa: u128) -> Option<Number> {
        if mantissa == 0 {
            return (len == 0 && exponent == 0 && !negative).then_some(Number::ZERO);
        }
        let digits = mantissa.ilog10() + 1;
        let magnitude = i64::from(exponent) + i64::from(len) - 1;
        let canonical = usize::from(len) <= MAX_DIGITS
            && digits == u32::from(len)
            && !mantissa.is_multiple_of(10)
            && (MIN_MAGNITUDE as i64..=MAX_MAGNITUDE as i64).contains(&magnitude);
        canonical.then_some(Number {
            negative,
            len,
            exponent,
            mantissa_hi: (mantissa >> 64) as u64,
            mantissa_lo: mantissa as u64,
        })
    }

    const ZERO: Number = Number { negative: false, len: 0, exponent: 0, mantissa_hi: 0, mantissa_lo: 0 };

    fn mantissa(&self) -> u128 {
        (u128::from(self.mantissa_hi) << 64) | u128::from(self.mantissa_lo)
    }

    fn digits(&self) -> Digits {
        let mut d = Digits { buf: [b'0'; 40], start: 40 };
        let mut m = self.mantissa();
        // 64-bit division is several times cheaper than 128-bit; most numbers fit.
        while m > u128::from(u64::MAX) {
            d.start -= 1;
            d.buf[d.start] = b'0' + (m % 10) as u8;
            m /= 10;
        }
        let mut small = m as u64;
        while small > 0 {
            d.start -= 1;
            d.buf[d.start] = b'0' + (small % 10) as u8;
            small /= 10;
        }
        d
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.len == 0
    }

    /// Whether the value is below zero (zero never is, even written `-0`).
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// Digits after the decimal point in plain notation.
    pub fn scale(&self) -> u32 {
        if self.exponent < 0 {
            (-self.exponent) as u32
        } else {
            0
        }
    }

    /// Digits before the decimal point in plain notation (0 for |x| < 1).
    pub fn integer_digits(&self) -> u32 {
        let n = i32::from(self.len) + self.exponent;
        n.max(0) as u32
    }

    /// Whether the value has no fractional part.
    pub fn is_integral(&self) -> bool {
        self.exponent >= 0
    }

    /// The value as an i64 when it is integral and in range.
    pub fn to_i64(&self) -> Option<i64> {
        if self.is_zero() {
            return Some(0);
        }
        if !self.is_integral() || self.integer_digits() > 19 {
            return None;
        }
        // At most 19 integer digits: the mantissa fits an i128 with room to scale.
        let mut v = self.mantissa() as i128;
        for _ in 0..self.exponent {
            v *= 10;
        }
        if self.negative {
            v = -v;
        }
        i64::try_from(v).ok()
    }

    /// Whether the value is stored exactly by `DECIMAL(38, scale)`.
    pub fn fits_decimal(&self, scale: u32) -> bool {
        self.is_zero() || (self.scale() <= scale && self.integer_digits() + scale <= MAX_DIGITS as u32)
    }

    /// Plain decimal notation (no exponent); used where a column holds the value as DECIMAL.
    /// Most numbers are short enough to be stored inline, without an allocation.
    pub fn to_plain(&self) -> Text {
        let mut out = Text::with_capacity(usize::from(self.len) + 4);
        self.write_plain(&mut out);
        out
    }

    /// Appends the plain notation to `out` (see `to_plain`).
    pub fn write_plain(&self, out: &mut impl fmt::Write) {
        // Writing to a string or a formatter's buffer does not fail on its own.
        let _ = self.try_write_plain(out);
    }

    fn try_write_plain(&self, out: &mut impl fmt::Write) -> fmt::Result {
        if self.is_zero() {
            return out.write_char('0');
        }
        let zeros = |out: &mut dyn fmt::Write, n: usize| (0..n).try_for_each(|_| out.write_char('0'));
        let digits = self.digits();
        let digits = digits.as_str();
        if self.negative {
            out.write_char('-')?;
        }
        if self.exponent >= 0 {
            out.write_str(digits)?;
            zeros(out, self.exponent as usize)
        } else {
            let scale = (-self.exponent) as usize;
            if digits.len() > scale {
                let (i, f) = digits.split_at(digits.len() - scale);
                out.write_str(i)?;
                out.write_char('.')?;
                out.write_str(f)
            } else {
                out.write_str("0.")?;
                zeros(out, scale - digits.len())?;
                out.write_str(digits)
            }
        }
    }
}

impl Number {
    /// Appends the canonical text (see `Display`) to `out` without a temporary string.
    pub fn write_canonical(&self, out: &mut String) {
        use fmt::Write as _;
        let _ = write!(out, "{self}");
    }
}

/// Canonical text: plain notation for ordinary magnitudes, scientific beyond; always a valid
/// JSON number and equal for equal values ("1.0", "1", "10E-1" all print "1").
impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain_len = self.integer_digits().max(1) + self.scale();
        if plain_len <= 48 {
            return self.try_write_plain(f);
        }
        if self.negative {
            f.write_str("-")?;
        }
        let digits = self.digits();
        let digits = digits.as_str();
        let magnitude = self.exponent + digits.len() as i32 - 1;
        let (first, rest) = digits.split_at(1);
        f.write_str(first)?;
        if !rest.is_empty() {
            write!(f, ".{rest}")?;
        }
        write!(f, "E{}{}", if magnitude < 0 { "-" } else { "+" }, magnitude.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Number::parse(s).unwrap().to_string()
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canon("1"), "1");
        assert_eq!(canon("1.0"), "1");
        assert_eq!(canon("10E-1"), "1");
        assert_eq!(canon("-12.5E3"), "-12500");
        assert_eq!(canon("0.000"), "0");
        assert_eq!(canon("-0"), "0");
        assert_eq!(canon(".5"), "0.5");
        assert_eq!(canon("007.250"), "7.25");
        assert_eq!(canon("1E+125"), "1E+125");
        assert_eq!(canon("-1.5E-130"), "-1.5E-130");
        assert_eq!(canon("19.90"), "19.9");
    }

    #[test]
    fn digits_round_trip_on_both_sides_of_64_bits() {
        for digits in [
            "9999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "12345678901234567891",
            "12345678901234567890123456789012345678",
            "99999999999999999999999999999999999999",
        ] {
            assert_eq!(canon(digits), digits);
            assert_eq!(canon(&format!("-{digits}")), format!("-{digits}"));
        }
        assert_eq!(canon("1234567890123456789.5"), "1234567890123456789.5");
    }

    #[test]
    fn limits() {
        assert!(Number::parse("12345678901234567890123456789012345678").is_ok());
        assert!(matches!(
            Number::parse("123456789012345678901234567890123456789"),
            Err(NumberError::TooPrecise(_))
        ));
        assert!(matches!(Number::parse("1E126"), Err(NumberError::OutOfRange(_))));
        assert!(matches!(Number::parse("1E-131"), Err(NumberError::OutOfRange(_))));
        assert!(Number::parse("9.99E+125").is_ok());
        for bad in ["", "-", "abc", "1.2.3", "1e", "1e+", "--1", "0x10", "1 2", "NaN", "Infinity"] {
            assert!(Number::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn integers_and_decimals() {
        assert_eq!(Number::parse("9223372036854775807").unwrap().to_i64(), Some(i64::MAX));
        assert_eq!(Number::parse("-9223372036854775808").unwrap().to_i64(), Some(i64::MIN));
        assert_eq!(Number::parse("9223372036854775808").unwrap().to_i64(), None);
        assert_eq!(Number::parse("1.5").unwrap().to_i64(), None);
        assert_eq!(Number::parse("15E3").unwrap().to_i64(), Some(15000));
        let n = Number::parse("123.456").unwrap();
        assert_eq!((n.scale(), n.integer_digits()), (3, 3));
        assert!(n.fits_decimal(3) && !n.fits_decimal(2) && !n.fits_decimal(36));
        assert_eq!(Number::parse("0.0012").unwrap().to_plain(), "0.0012");
        assert_eq!(Number::parse("-0.5").unwrap().to_plain(), "-0.5");
    }

    proptest::proptest! {
        /// Digits, a decimal point anywhere and zeros at either end: the parts are the
        /// significant digits and their exponent, worked out here the slow way.
        #[test]
        fn parts_are_the_significant_digits(
            int in "0{0,3}[0-9]{0,20}0{0,3}",
            frac in "0{0,3}[0-9]{0,20}0{0,3}",
            point in proptest::bool::ANY,
            negative in proptest::bool::ANY,
            exp in proptest::option::of(-150i32..150),
        ) {
            let text = match (point, frac.is_empty()) {
                (true, _) | (false, false) if !(int.is_empty() && frac.is_empty()) => format!("{int}.{frac}"),
                _ => int.clone(),
            };
            let text = if negative { format!("-{text}") } else { text };
            let text = match exp {
                Some(e) if e % 2 == 0 => format!("{text}e{e}"),
                Some(e) => format!("{text}E{e:+}"),
                None => text,
            };
            let digits = if text.contains('.') { format!("{int}{frac}") } else { int.clone() };
            let scale = if text.contains('.') { frac.len() as i32 } else { 0 };
            let parsed = Number::parse(&text);
            if digits.is_empty() {
                proptest::prop_assert!(parsed.is_err());
                return Ok(());
            }
            let significant = digits.trim_start_matches('0');
            let trimmed = significant.trim_end_matches('0');
            if trimmed.len() > MAX_DIGITS {
                proptest::prop_assert!(matches!(parsed, Err(NumberError::TooPrecise(_))));
                return Ok(());
            }
            if trimmed.is_empty() {
                proptest::prop_assert_eq!(parsed.map(Number::to_parts), Ok((false, 0, 0, 0)));
                return Ok(());
            }
            let exponent = (significant.len() - trimmed.len()) as i32 - scale + exp.unwrap_or(0);
            let magnitude = exponent + trimmed.len() as i32 - 1;
            if !(-130..=125).contains(&magnitude) {
                proptest::prop_assert!(matches!(parsed, Err(NumberError::OutOfRange(_))));
                return Ok(());
            }
            let expected = (negative, trimmed.len() as u8, exponent, trimmed.parse::<u128>().unwrap());
            proptest::prop_assert_eq!(parsed.map(Number::to_parts), Ok(expected));
        }
    }
}
