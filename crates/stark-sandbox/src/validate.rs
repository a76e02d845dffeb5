//! Checking create bodies the way Stark does: every bad item reported, nothing created unless
//! all are good (docs/stark-api.md, "Responses and errors").

use serde_json::{Map, Value};
use stark_client::{Rule, StarkError};

use crate::error::ApiError;
use pipeline_domain::taxid::TaxId;

/// Stark's maximum batch size and page size.
pub const MAX_ITEMS: usize = 100;

/// Amounts must stay below 10^15 cents (the SDK tests refuse `1000000000000000`).
pub const MAX_AMOUNT: i64 = 999_999_999_999_999;

/// Reads `{"<key>": [...]}` with 1 to 100 items. A bad envelope or size is exactly one
/// `invalidJson`, as Stark answers a 105-item batch.
pub fn batch(body: &[u8], key: &str) -> Result<Vec<Value>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("invalidJson", format!("The body is not valid JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::bad(
            "invalidJson",
            format!("The body must be an object with a list {key:?}."),
        ));
    };
    if let Some(other) = map.keys().find(|k| *k != key) {
        return Err(ApiError::bad(
            "invalidJson",
            format!("Unknown field {other:?} in the body."),
        ));
    }
    let Some(Value::Array(items)) = map.remove(key) else {
        return Err(ApiError::bad(
            "invalidJson",
            format!("The body must have a list {key:?}."),
        ));
    };
    if items.is_empty() {
        return Err(ApiError::bad(
            "invalidJson",
            format!("The list {key:?} is empty."),
        ));
    }
    if items.len() > MAX_ITEMS {
        return Err(ApiError::bad(
            "invalidJson",
            format!(
                "At most {MAX_ITEMS} {key} can be created at once; got {}.",
                items.len()
            ),
        ));
    }
    Ok(items)
}

/// One item of a batch being checked; problems go to the shared error list, prefixed with the
/// item's position so that a client can tell which one failed.
#[derive(Debug)]
pub struct Item<'a> {
    /// Position in the batch.
    pub index: usize,
    obj: &'a Map<String, Value>,
    errors: &'a mut Vec<StarkError>,
}

impl<'a> Item<'a> {
    /// Starts checking item `index`; a non-object is one `invalidJson` and `None`.
    pub fn new(index: usize, value: &'a Value, errors: &'a mut Vec<StarkError>) -> Option<Self> {
        match value {
            Value::Object(obj) => Some(Self { index, obj, errors }),
            _ => {
                errors.push(StarkError {
                    code: "invalidJson".into(),
                    message: format!("Element {index}: must be an object."),
                });
                None
            }
        }
    }

    /// Records a problem with this item.
    pub fn err(&mut self, code: &str, message: impl std::fmt::Display) {
        self.errors.push(StarkError {
            code: code.to_owned(),
            message: format!("Element {}: {message}", self.index),
        });
    }

    /// Refuses fields Stark does not know (its tests expect an error per unknown property).
    pub fn only(&mut self, allowed: &[&str]) {
        let unknown: Vec<String> = self
            .obj
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            self.err("invalidJson", format!("unknown field {key:?}."));
        }
    }

    /// A field, with `null` treated as absent (Python's SDK drops `None`s, others may not).
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    /// A required string; missing or not a string is `invalidJson`.
    pub fn required_str(&mut self, key: &str) -> Option<String> {
        match self.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.err("invalidJson", format!("{key} must be a string."));
                None
            }
            None => {
                self.err("invalidJson", format!("{key} is required."));
                None
            }
        }
    }

    /// An optional string; a non-string is `code`.
    pub fn opt_str(&mut self, key: &str, code: &str) -> Option<String> {
        match self.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.err(code, format!("{key} must be a string."));
                None
            }
            None => None,
        }
    }

    /// A required name: a non-blank string.
    pub fn name(&mut self) -> Option<String> {
        let name = self.required_str("name")?;
        if name.trim().is_empty() {
            self.err("invalidName", "name must not be blank.");
            return None;
        }
        Some(name)
    }

    /// A required integer amount of cents, `min ..= MAX_AMOUNT`; anything else (a string, a
    /// float, a negative, 10^15, an object) is `invalidAmount`.
    pub fn amount(&mut self, min: i64) -> Option<i64> {
        match self.get("amount") {
            None => {
                self.err("invalidJson", "amount is required.");
                None
            }
            Some(v) => match v.as_i64().filter(|a| (min..=MAX_AMOUNT).contains(a)) {
                Some(a) if v.is_i64() || v.is_u64() => Some(a),
                _ => {
                    self.err("invalidAmount", format!("amount must be an integer number of cents from {min} to {MAX_AMOUNT}; got {v}."));
                    None
                }
            },
        }
    }

    /// A required CPF or CNPJ with valid check digits.
    pub fn tax_id(&mut self) -> Option<TaxId> {
        match self.get("taxId") {
            None => {
                self.err("invalidJson", "taxId is required.");
                None
            }
            Some(Value::String(s)) => {
                let parsed = TaxId::parse(s).ok();
                if parsed.is_none() {
                    self.err(
                        "invalidTaxId",
                        format!("taxId {s:?} is not a valid CPF or CNPJ."),
                    );
                }
                parsed
            }
            Some(other) => {
                self.err(
                    "invalidTaxId",
                    format!("taxId must be a string; got {other}."),
                );
                None
            }
        }
    }

    /// Tags, lowercased as Stark stores them.
    pub fn tags(&mut self) -> Vec<String> {
        match self.get("tags") {
            None => Vec::new(),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_lowercase)
                .collect(),
            Some(_) => {
                self.err("invalidTags", "tags must be a list of strings.");
                Vec::new()
            }
        }
    }

    /// Rules: a list of `{"key": str, "value": any}`.
    pub fn rules(&mut self) -> Vec<Rule> {
        match self.get("rules") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut rules = Vec::new();
                for item in items {
                    match item.as_object() {
                        Some(o)
                            if o.len() == 2
                                && o.get("key").is_some_and(Value::is_string)
                                && o.contains_key("value") =>
                        {
                            rules.push(Rule {
                                key: o["key"].as_str().unwrap_or_default().to_owned(),
                                value: o["value"].clone(),
                            });
                        }
                        _ => self.err(
                            "invalidRule",
                            "each rule must be {\"key\": string, \"value\": ...}.",
                        ),
                    }
                }
                rules
            }
            Some(_) => {
                self.err("invalidRule", "rules must be a list.");
                Vec::new()
            }
        }
    }
}
