//! Brazilian tax ids: CPF (people, 11 digits) and CNPJ (companies, 14 digits).
//!
//! Stark Bank rejects an invalid tax id with `invalidTaxId`; checking here first turns a bad
//! configuration or a bad generated payer into a clear error before any money moves. The same
//! type validates tax ids in the pipeline and in the local sandbox, so both apply one rule:
//! digits, optionally with the usual separators `.`, `-` and `/`, nothing else (no spaces: Stark
//! documents the formatted and the bare forms only). Callers that read a value from a file or
//! the environment trim it first.

use std::fmt;

/// A validated CPF or CNPJ, kept as its digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TaxId {
    /// 11-digit individual taxpayer id.
    Cpf(String),
    /// 14-digit company id.
    Cnpj(String),
}

/// Why a tax id is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaxIdError {
    /// Not 11 or 14 digits once `.`, `-` and `/` are removed.
    #[error("tax id {0:?} must have 11 (CPF) or 14 (CNPJ) digits")]
    Length(String),
    /// Contains something other than digits and `.`, `-`, `/`.
    #[error("tax id {0:?} contains characters other than digits and . - /")]
    Characters(String),
    /// All digits equal (`000.000.000-00`): passes the arithmetic, refused by Stark.
    #[error("tax id {0:?} has all digits equal")]
    Repeated(String),
    /// The check digits do not match.
    #[error("tax id {0:?} has wrong check digits")]
    CheckDigits(String),
}

impl TaxId {
    /// Parses a formatted or bare CPF/CNPJ and checks its digits.
    pub fn parse(text: &str) -> Result<Self, TaxIdError> {
        let mut digits = Vec::with_capacity(14);
        for c in text.chars() {
            match c {
                '0'..='9' => digits.push(c as u8 - b'0'),
                '.' | '-' | '/' => {}
                _ => return Err(TaxIdError::Characters(text.to_owned())),
            }
        }
        if digits.len() != 11 && digits.len() != 14 {
            return Err(TaxIdError::Length(text.to_owned()));
        }
        if digits.iter().all(|d| *d == digits[0]) {
            return Err(TaxIdError::Repeated(text.to_owned()));
        }
        let body = digits.len() - 2;
        let expected = if digits.len() == 11 {
            cpf_check_digits(&digits[..body])
        } else {
            cnpj_check_digits(&digits[..body])
        };
        if digits[body..] != expected {
            return Err(TaxIdError::CheckDigits(text.to_owned()));
        }
        let as_text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        Ok(if digits.len() == 11 {
            TaxId::Cpf(as_text)
        } else {
            TaxId::Cnpj(as_text)
        })
    }

    /// Builds a valid CPF from its first nine digits (used to generate payers).
    pub fn cpf_from_base(base: [u8; 9]) -> Self {
        let mut digits = base.to_vec();
        digits.extend(cpf_check_digits(&base));
        TaxId::Cpf(digits.iter().map(|d| char::from(b'0' + d)).collect())
    }

    /// The bare digits.
    pub fn digits(&self) -> &str {
        match self {
            TaxId::Cpf(d) | TaxId::Cnpj(d) => d,
        }
    }

    /// True for an 11-digit CPF (a person), false for a CNPJ (a company).
    pub fn is_cpf(&self) -> bool {
        matches!(self, TaxId::Cpf(_))
    }
}

/// Formats as Stark shows it: `012.345.678-90` or `20.018.183/0001-80`.
impl fmt::Display for TaxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaxId::Cpf(d) => write!(f, "{}.{}.{}-{}", &d[0..3], &d[3..6], &d[6..9], &d[9..11]),
            TaxId::Cnpj(d) => write!(
                f,
                "{}.{}.{}/{}-{}",
                &d[0..2],
                &d[2..5],
                &d[5..8],
                &d[8..12],
                &d[12..14]
            ),
        }
    }
}

/// CPF: weights n+1 down to 2 over the digits so far; `r = Σ mod 11`; digit `0 if r < 2 else 11 - r`.
fn cpf_check_digits(base: &[u8]) -> [u8; 2] {
    let digit = |digits: &[u8]| {
        let n = digits.len() as u32;
        let sum: u32 = digits
            .iter()
            .enumerate()
            .map(|(i, d)| u32::from(*d) * (n + 1 - i as u32))
            .sum();
        let r = sum % 11;
        if r < 2 { 0 } else { (11 - r) as u8 }
    };
    let first = digit(base);
    let mut with_first = base.to_vec();
    with_first.push(first);
    [first, digit(&with_first)]
}

/// CNPJ: weights 2..=9 repeating from the rightmost digit; digit `11 - Σ mod 11`, 10 and 11 → 0.
fn cnpj_check_digits(base: &[u8]) -> [u8; 2] {
    let digit = |digits: &[u8]| {
        let sum: u32 = digits
            .iter()
            .rev()
            .enumerate()
            .map(|(i, d)| u32::from(*d) * (2 + (i as u32 % 8)))
            .sum();
        let r = 11 - sum % 11;
        if r >= 10 { 0 } else { r as u8 }
    };
    let first = digit(base);
    let mut with_first = base.to_vec();
    with_first.push(first);
    [first, digit(&with_first)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids_validate_and_format() {
        let stark = TaxId::parse("20.018.183/0001-80").unwrap();
        assert_eq!(stark.to_string(), "20.018.183/0001-80");
        assert!(matches!(TaxId::parse("20018183000180"), Ok(TaxId::Cnpj(_))));
        for cpf in ["012.345.678-90", "337.451.076-08"] {
            let parsed = TaxId::parse(cpf).unwrap();
            assert_eq!(parsed.to_string(), cpf);
        }
        assert!(TaxId::parse("91.642.017/0001-06").is_ok());
    }

    #[test]
    fn bad_ids_are_refused_with_the_reason() {
        assert_eq!(
            TaxId::parse("012.345.678-91"),
            Err(TaxIdError::CheckDigits("012.345.678-91".into()))
        );
        assert_eq!(
            TaxId::parse("20.018.183/0001-81"),
            Err(TaxIdError::CheckDigits("20.018.183/0001-81".into()))
        );
        assert_eq!(
            TaxId::parse("000.000.000-00"),
            Err(TaxIdError::Repeated("000.000.000-00".into()))
        );
        assert_eq!(
            TaxId::parse("00.000.000/0000-00"),
            Err(TaxIdError::Repeated("00.000.000/0000-00".into()))
        );
        assert_eq!(
            TaxId::parse("abc"),
            Err(TaxIdError::Characters("abc".into()))
        );
        assert_eq!(TaxId::parse("123"), Err(TaxIdError::Length("123".into())));
        // One rule for the pipeline and the sandbox: separators yes, spaces no.
        assert_eq!(
            TaxId::parse("012 345 678 90"),
            Err(TaxIdError::Characters("012 345 678 90".into()))
        );
        assert!(TaxId::parse("012.345.678-90").unwrap().is_cpf());
        assert!(!TaxId::parse("20018183000180").unwrap().is_cpf());
    }

    #[test]
    fn generated_cpfs_are_valid() {
        for seed in 0..2000u32 {
            let mut base = [0u8; 9];
            let mut x = seed.wrapping_mul(2_654_435_761);
            for d in &mut base {
                *d = (x % 10) as u8;
                x /= 10;
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            let cpf = TaxId::cpf_from_base(base);
            if base.iter().all(|d| *d == base[0]) {
                continue;
            }
            assert_eq!(TaxId::parse(&cpf.to_string()), Ok(cpf));
        }
    }
}
