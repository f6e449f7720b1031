//! DynamoDB numbers: parsed from their decimal text into an exact, canonical form.
//!
//! DynamoDB numbers carry up to 38 significant digits with a magnitude from 1E-130 to
//! 9.99…E+125. They never pass through a float here: the digits and a decimal exponent are
//! kept as they are, so every value round-trips exactly.

use std::fmt;

/// Largest number of significant digits DynamoDB stores.
pub const MAX_DIGITS: usize = 38;
/// Exponent of the most significant digit must lie in this range.
const MIN_MAGNITUDE: i32 = -130;
const MAX_MAGNITUDE: i32 = 125;

/// An exact DynamoDB number: `(-1)^negative × digits × 10^exponent`, with `digits` free of
/// leading and trailing zeros (zero is the empty digit string).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Number {
    negative: bool,
    digits: String,
    exponent: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("`{0}` is not a number")]
    Syntax(String),
    #[error("`{0}` has more than 38 significant digits")]
    TooPrecise(String),
    #[error("`{0}` is outside DynamoDB's range 1E-130 to 9.99E+125")]
    OutOfRange(String),
}

impl Number {
    pub fn parse(text: &str) -> Result<Number, NumberError> {
        let syntax = || NumberError::Syntax(text.chars().take(64).collect());
        let s = text.trim();
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exp_part) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (int_part, frac_part) = match mantissa.find('.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(syntax());
        }
        if !int_part.bytes().all(|b| b.is_ascii_digit()) || !frac_part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let mut exponent: i64 = match exp_part {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                e.parse::<i64>().map_err(|_| syntax())?
            }
        };
        exponent -= frac_part.len() as i64;
        // Significant digits: integer and fraction parts without leading or trailing zeros.
        let mut digits = String::with_capacity(int_part.len() + frac_part.len());
        for b in int_part.bytes().chain(frac_part.bytes()) {
            if b != b'0' || !digits.is_empty() {
                digits.push(b as char);
            }
        }
        let significant = digits.trim_end_matches('0').len();
        exponent += (digits.len() - significant) as i64;
        digits.truncate(significant);
        if digits.is_empty() {
            return Ok(Number { negative: false, digits, exponent: 0 });
        }
        if digits.len() > MAX_DIGITS {
            return Err(NumberError::TooPrecise(text.chars().take(64).collect()));
        }
        let magnitude = exponent + digits.len() as i64 - 1;
        if magnitude < MIN_MAGNITUDE as i64 || magnitude > MAX_MAGNITUDE as i64 {
            return Err(NumberError::OutOfRange(text.chars().take(64).collect()));
        }
        Ok(Number { negative, digits, exponent: exponent as i32 })
    }

    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

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
        let n = self.digits.len() as i32 + self.exponent;
        n.max(0) as u32
    }

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
        let mut v: i128 = 0;
        for b in self.digits.bytes() {
            v = v * 10 + (b - b'0') as i128;
        }
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
    pub fn to_plain(&self) -> String {
        if self.is_zero() {
            return "0".into();
        }
        let mut out = String::with_capacity(self.digits.len() + 4);
        if self.negative {
            out.push('-');
        }
        if self.exponent >= 0 {
            out.push_str(&self.digits);
            out.extend(std::iter::repeat_n('0', self.exponent as usize));
        } else {
            let scale = (-self.exponent) as usize;
            if self.digits.len() > scale {
                let (i, f) = self.digits.split_at(self.digits.len() - scale);
                out.push_str(i);
                out.push('.');
                out.push_str(f);
            } else {
                out.push_str("0.");
                out.extend(std::iter::repeat_n('0', scale - self.digits.len()));
                out.push_str(&self.digits);
            }
        }
        out
    }
}

/// Canonical text: plain notation for ordinary magnitudes, scientific beyond; always a valid
/// JSON number and equal for equal values ("1.0", "1", "10E-1" all print "1").
impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain_len = self.integer_digits().max(1) + self.scale();
        if plain_len <= 48 {
            return f.write_str(&self.to_plain());
        }
        if self.negative {
            f.write_str("-")?;
        }
        let magnitude = self.exponent + self.digits.len() as i32 - 1;
        let (first, rest) = self.digits.split_at(1);
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
}
