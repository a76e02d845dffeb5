//! JSON serialized byte-for-byte as Python's `json.dumps` does.
//!
//! Two places need Python's exact bytes: the Python SDK's webhook check falls back to
//! `json.dumps(json.loads(body), sort_keys=True)`, so our verifier must rebuild that string; and
//! Stark's servers sign webhook bodies serialized that way, so the sandbox must produce it.
//! Python's defaults are `", "` and `": "` separators and `ensure_ascii=True` (every character
//! outside printable ASCII escaped as `\uXXXX`, astral characters as surrogate pairs).
//!
//! Keys are sorted here explicitly rather than relying on `serde_json::Map` ordering, which a
//! dependency enabling `preserve_order` would silently change.

use serde_json::Value;

/// `json.dumps(value, sort_keys=True)`.
pub fn to_string_sorted(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(out, key);
                out.push_str(": ");
                write_value(out, &map[key.as_str()]);
            }
            out.push('}');
        }
    }
}

/// Integers print as digits; floats as Python's `repr(float)`: shortest round-trip digits, at
/// least one decimal, exponent form `1e+16` from 1e16 up and below 1e-4.
fn write_number(out: &mut String, n: &serde_json::Number) {
    if n.is_i64() || n.is_u64() {
        out.push_str(&n.to_string());
        return;
    }
    let f = n.as_f64().unwrap_or(0.0);
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Rust's `{:e}` gives the shortest digits, like `1e16` or `1.5e-5`; Python writes
        // `1e+16` and `1.5e-05`.
        let formatted = format!("{f:e}");
        let (mantissa, exponent) = formatted.split_once('e').unwrap_or((&formatted, "0"));
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exponent),
        };
        out.push_str(&format!("{mantissa}e{sign}{digits:0>2}"));
    } else {
        let mut formatted = format!("{f}");
        if !formatted.contains('.') {
            formatted.push_str(".0");
        }
        out.push_str(&formatted);
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_json_dumps_sort_keys() {
        // Expected strings produced by CPython 3.11: json.dumps(v, sort_keys=True).
        let value = json!({"b": [1, 2.5, null, true], "a": {"z": "Jo\u{e3}o", "y": "\u{1F600}\t\"\u{7f}"}, "c": 2.0});
        assert_eq!(
            to_string_sorted(&value),
            r#"{"a": {"y": "\ud83d\ude00\t\"\u007f", "z": "Jo\u00e3o"}, "b": [1, 2.5, null, true], "c": 2.0}"#
        );
    }

    #[test]
    fn floats_follow_python_repr() {
        for (f, expected) in [
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123.0, "123.0"),
            (-0.5, "-0.5"),
            (1e22, "1e+22"),
        ] {
            assert_eq!(to_string_sorted(&json!(f)), expected, "{f}");
        }
    }
}
