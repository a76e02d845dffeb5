//! Brazilian tax ids (CPF and CNPJ): check digits and formatting.
//!
//! Stark refuses a bad tax id with `invalidTaxId`, and a simulator that accepted anything would
//! let a client bug through to production. The rules come from the official SDK's test generator
//! (docs/stark-api.md, "Invoices"); ids made of one repeated digit pass the arithmetic but Stark refuses them, so
//! we do too.

/// A tax id that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxId {
    /// The 11 (CPF) or 14 (CNPJ) digits, without formatting.
    pub digits: String,
}

impl TaxId {
    /// Parses a CPF or CNPJ, formatted (`012.345.678-90`, `20.018.183/0001-80`) or bare.
    ///
    /// Only digits and the usual separators (`.`, `-`, `/`) are accepted, so that `"abc"` or an
    /// alphanumeric CNPJ (not known to be accepted by Stark) is refused.
    pub fn parse(text: &str) -> Option<Self> {
        if !text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '/'))
        {
            return None;
        }
        let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
        let valid = match digits.len() {
            11 => cpf_ok(&digits),
            14 => cnpj_ok(&digits),
            _ => false,
        };
        let all_equal = digits.windows(2).all(|w| w[0] == w[1]);
        (valid && !all_equal).then(|| Self {
            digits: digits
                .iter()
                .map(|d| char::from_digit(*d, 10).unwrap_or('0'))
                .collect(),
        })
    }

    /// True for an 11-digit CPF (a person), false for a CNPJ (a company).
    pub fn is_cpf(&self) -> bool {
        self.digits.len() == 11
    }

    /// The formatted form Stark answers with.
    pub fn formatted(&self) -> String {
        let d = &self.digits;
        if self.is_cpf() {
            format!("{}.{}.{}-{}", &d[0..3], &d[3..6], &d[6..9], &d[9..11])
        } else {
            format!(
                "{}.{}.{}/{}-{}",
                &d[0..2],
                &d[2..5],
                &d[5..8],
                &d[8..12],
                &d[12..14]
            )
        }
    }
}

/// CPF: each check digit weighs the digits before it from n+1 down to 2; `r = Σ mod 11`,
/// digit = 0 if r < 2 else 11 − r.
fn cpf_ok(d: &[u32]) -> bool {
    let check = |n: usize| {
        let sum: u32 = (0..n).map(|i| d[i] * (n as u32 + 1 - i as u32)).sum();
        let r = sum % 11;
        if r < 2 { 0 } else { 11 - r }
    };
    check(9) == d[9] && check(10) == d[10]
}

/// CNPJ: weights 2..=9 repeat from the rightmost digit; digit = 11 − (Σ mod 11), 10 or 11 → 0.
fn cnpj_ok(d: &[u32]) -> bool {
    let check = |n: usize| {
        let sum: u32 = (0..n).map(|i| d[n - 1 - i] * (2 + (i as u32 % 8))).sum();
        let r = 11 - sum % 11;
        if r >= 10 { 0 } else { r }
    };
    check(12) == d[12] && check(13) == d[13]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_known_valid_ids_and_formats_them() {
        assert_eq!(
            TaxId::parse("012.345.678-90").unwrap().formatted(),
            "012.345.678-90"
        );
        assert_eq!(
            TaxId::parse("01234567890").unwrap().formatted(),
            "012.345.678-90"
        );
        assert_eq!(
            TaxId::parse("20.018.183/0001-80").unwrap().formatted(),
            "20.018.183/0001-80"
        );
        assert_eq!(
            TaxId::parse("20018183000180").unwrap().formatted(),
            "20.018.183/0001-80"
        );
        assert!(TaxId::parse("11.222.333/0001-81").is_some());
    }

    #[test]
    fn refuses_bad_check_digits_repeated_digits_and_garbage() {
        for bad in [
            "012.345.678-91",
            "20.018.183/0001-81",
            "000.000.000-00",
            "111.111.111-11",
            "00.000.000/0000-00",
            "abc",
            "123",
            "",
            "012 345 678 90",
        ] {
            assert!(TaxId::parse(bad).is_none(), "{bad}");
        }
    }
}
