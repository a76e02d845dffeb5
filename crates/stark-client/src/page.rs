//! Cursor pagination, shared by every list route.

use serde::de::DeserializeOwned;

use crate::client::Client;
use crate::error::Error;

/// One page of a list route.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// Opaque cursor of the next page; `None` on the last one.
    pub cursor: Option<String>,
}

/// Stark caps a page at 100 items.
pub const MAX_PAGE: usize = 100;

impl Client {
    /// Fetches one page of `path`, reading the items under `key` (`invoices`, `logs`, …).
    pub async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        query: &[(&str, String)],
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<T>, Error> {
        let mut pairs: Vec<(&str, String)> = query.to_vec();
        pairs.push(("limit", limit.clamp(1, MAX_PAGE).to_string()));
        if let Some(cursor) = cursor {
            pairs.push(("cursor", cursor.to_owned()));
        }
        let mut body: serde_json::Value = self.get(path, &pairs).await?;
        let bad = |detail: String| Error::UnknownOutcome {
            method: "GET".into(),
            url: path.to_owned(),
            detail,
        };
        let items = body
            .get_mut(key)
            .map(serde_json::Value::take)
            .ok_or_else(|| bad(format!("the answer has no `{key}` list")))?;
        let items: Vec<T> = serde_json::from_value(items)
            .map_err(|e| bad(format!("unexpected `{key}` items: {e}")))?;
        let cursor = match body.get("cursor") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(c)) if c.is_empty() => None,
            Some(serde_json::Value::String(c)) => Some(c.clone()),
            Some(other) => return Err(bad(format!("unexpected cursor {other}"))),
        };
        Ok(Page { items, cursor })
    }

    /// Follows cursors until the list ends or `limit` items were read (`None`: all of them).
    pub async fn collect<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        query: &[(&str, String)],
        limit: Option<usize>,
    ) -> Result<Vec<T>, Error> {
        let mut out = Vec::new();
        self.for_each_page(path, key, query, limit, |items| out.extend(items))
            .await?;
        Ok(out)
    }

    /// Follows cursors like [`Client::collect`], handing each page's items to `visit` instead
    /// of keeping them all: a reader that needs a few fields of each item holds only those
    /// (the reconciler reads a whole day's invoices and credits this way).
    pub async fn for_each_page<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        query: &[(&str, String)],
        limit: Option<usize>,
        mut visit: impl FnMut(Vec<T>),
    ) -> Result<(), Error> {
        let mut read = 0;
        let mut cursor: Option<String> = None;
        loop {
            let want = limit.map_or(MAX_PAGE, |l| (l - read).min(MAX_PAGE));
            let mut page: Page<T> = self.page(path, key, query, cursor.as_deref(), want).await?;
            if let Some(l) = limit {
                page.items.truncate(l - read);
            }
            read += page.items.len();
            visit(page.items);
            if limit.is_some_and(|l| read >= l) {
                return Ok(());
            }
            match page.cursor {
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                _ => return Ok(()),
            }
        }
    }
}

/// Rejects ids that could alter the request path (ids come from webhooks and messages).
pub(crate) fn check_id(kind: &str, id: &str) -> Result<(), Error> {
    if !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!("invalid {kind} id {id:?}")))
    }
}

/// Adds `key=a,b,c` when `values` is not empty.
pub(crate) fn push_list<'a>(pairs: &mut Vec<(&'a str, String)>, key: &'a str, values: &[String]) {
    if !values.is_empty() {
        pairs.push((key, values.join(",")));
    }
}

/// Adds `key=value` when present.
pub(crate) fn push_opt<'a>(pairs: &mut Vec<(&'a str, String)>, key: &'a str, value: Option<&str>) {
    if let Some(value) = value {
        pairs.push((key, value.to_owned()));
    }
}
