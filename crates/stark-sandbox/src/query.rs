//! Query-string parameters as the SDKs send them (docs/stark-api.md, "Base URLs and paths"): comma-joined lists, dates as
//! `YYYY-MM-DD`, booleans as `True`/`False` (Python) or `true`/`false` (Node).

use std::collections::HashMap;

use crate::clock::parse_date;
use crate::error::ApiError;
use crate::table::{ListParams, decode_cursor};
use crate::validate::MAX_ITEMS;

/// Decoded query parameters. Unknown ones are ignored, as SDKs send extras such as `fields`.
pub type Query = HashMap<String, String>;

/// Parses a raw query string.
pub fn parse(raw: Option<&str>) -> Query {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// A comma-separated list (`tags=a,b`); empty entries are dropped.
pub fn list(q: &Query, key: &str) -> Vec<String> {
    q.get(key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The `tags` filter, lowercased once (stored tags are lowercase, and a lookup by tag scans
/// every row, so per-row lowercasing made large sandboxes crawl).
pub fn tags(q: &Query) -> Vec<String> {
    list(q, "tags").iter().map(|t| t.to_lowercase()).collect()
}

/// Whether a row with `row_tags` passes the `wanted` tags filter: no filter, or any tag in it.
pub fn any_tag(row_tags: &[String], wanted: &[String]) -> bool {
    wanted.is_empty() || row_tags.iter().any(|t| wanted.contains(t))
}

/// A boolean, any case of `true`/`false`.
pub fn boolean(q: &Query, key: &str) -> Result<Option<bool>, ApiError> {
    match q.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if v == "true" => Ok(Some(true)),
        Some(v) if v == "false" => Ok(Some(false)),
        Some(v) => Err(ApiError::bad(
            "invalidJson",
            format!("{key} must be true or false; got {v:?}."),
        )),
    }
}

/// `limit` (1 to 100; larger is capped at 100, as the SDKs cap it), `cursor`, `after`,
/// `before` and `sort` (`created` for oldest first; `-created`, the default, and the `updated`
/// variants list newest created first).
pub fn list_params(q: &Query) -> Result<ListParams, ApiError> {
    let limit = match q.get("limit") {
        None => MAX_ITEMS,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => n.min(MAX_ITEMS),
            _ => {
                return Err(ApiError::bad(
                    "invalidLimit",
                    format!("limit must be an integer from 1 to {MAX_ITEMS}; got {v:?}."),
                ));
            }
        },
    };
    let cursor = match q.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(decode_cursor(c)?),
    };
    let date = |key: &str| -> Result<Option<time::Date>, ApiError> {
        match q.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_date(v).map(Some).ok_or_else(|| {
                ApiError::bad(
                    "invalidDate",
                    format!("{key} must be a date YYYY-MM-DD; got {v:?}."),
                )
            }),
        }
    };
    Ok(ListParams {
        limit,
        cursor,
        after: date("after")?,
        before: date("before")?,
        ascending: matches!(
            q.get("sort").map(String::as_str),
            Some("created" | "updated")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sdk_query_strings() {
        let q = parse(Some(
            "limit=3&after=2024-01-01&tags=a%2Cb&isDelivered=False",
        ));
        assert_eq!(list(&q, "tags"), ["a", "b"]);
        assert_eq!(boolean(&q, "isDelivered").unwrap(), Some(false));
        let p = list_params(&q).unwrap();
        assert_eq!(p.limit, 3);
        assert_eq!(p.after, Some(time::macros::date!(2024 - 01 - 01)));
        assert_eq!(list_params(&parse(Some("limit=500"))).unwrap().limit, 100);
        assert!(list_params(&parse(Some("limit=0"))).is_err());
        assert!(list_params(&parse(Some("after=yesterday"))).is_err());
        assert!(
            boolean(&parse(Some("isDelivered=TRUE")), "isDelivered")
                .unwrap()
                .unwrap()
        );
        assert!(boolean(&parse(Some("isDelivered=1")), "isDelivered").is_err());
    }
}
