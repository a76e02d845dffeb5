//! Money is integer cents (`i64`) everywhere; this module only shows it to people.

/// Formats cents as `R$ 1.234,56` for humans (logs, tables). Never used for arithmetic.
pub fn format_brl(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let reais = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in reais.chars().enumerate() {
        if i > 0 && (reais.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(c);
    }
    format!("{sign}R$ {grouped},{:02}", abs % 100)
}

#[cfg(test)]
mod tests {
    #[test]
    fn brl_formatting() {
        assert_eq!(super::format_brl(123456), "R$ 1.234,56");
        assert_eq!(super::format_brl(5), "R$ 0,05");
        assert_eq!(super::format_brl(-100000000), "-R$ 1.000.000,00");
    }
}
