//! Append-only tables with id lookup and Stark-style cursor pages.
//!
//! Rows are never removed (a deleted webhook or event is flagged), so a row's position is a
//! stable key: the cursor is the position of the last row of a page, and the next page continues
//! from there. Unlike an offset, that stays right while new rows are created between two pages,
//! which is exactly when a paging client runs (newest first, new rows land before the cursor).
//!
//! Every row belongs to one workspace ([`Ws`]); lookups and pages for the API name the
//! workspace, so that a project never sees another workspace's objects, exactly as if they did
//! not exist.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;

use crate::error::ApiError;

/// The workspace a row belongs to: an index into the world's workspaces (cheap to copy and
/// compare on every row of a page, unlike the 16-digit id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ws(pub usize);

/// One stored object.
#[derive(Debug, Clone)]
pub struct Row<T> {
    /// Creation time, for the `after`/`before` filters and the listing lag.
    pub at: OffsetDateTime,
    /// The workspace it belongs to.
    pub ws: Ws,
    /// The object as the API shows it.
    pub item: T,
    /// Deleted rows stay in place (positions are cursors) but are never listed or found.
    pub deleted: bool,
}

/// An id or lookup key as the indexes hold it. Every id the sandbox makes is a 16-digit number
/// (as Stark's are), held as one: a row's id is already in its item, and a second copy as text
/// in the index cost about 40 bytes more per row. Anything else (tags, tests' names) is text.
/// Only the canonical spelling is a number ("0123" and "+123" stay text), so that two
/// different texts never meet under one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Number(u64),
    Text(Box<str>),
}

impl Key {
    fn of(text: &str) -> Self {
        let canonical = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text.len() == 1 || !text.starts_with('0'));
        match text.parse() {
            Ok(n) if canonical => Self::Number(n),
            _ => Self::Text(text.into()),
        }
    }
}

/// Rows in creation order, indexed by id.
#[derive(Debug, Clone)]
pub struct Table<T> {
    rows: Vec<Row<T>>,
    index: HashMap<Key, usize>,
    /// Positions by lookup key (a tag, an invoice id), in creation order, for the lists that
    /// filter on one ([`Table::page_keyed`]): a lookup by tag then costs the rows that carry it,
    /// not the whole table (the pipeline makes one per invoice and per payout, so a scan makes a
    /// campaign quadratic).
    keys: HashMap<Key, Vec<usize>>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            index: HashMap::new(),
            keys: HashMap::new(),
        }
    }
}

impl<T> Table<T> {
    /// Appends a row of workspace `ws`.
    pub fn insert(&mut self, id: &str, at: OffsetDateTime, ws: Ws, item: T) {
        self.index.insert(Key::of(id), self.rows.len());
        self.rows.push(Row {
            at,
            ws,
            item,
            deleted: false,
        });
    }

    /// [`Table::insert`], and the row is found under each of `keys` by [`Table::page_keyed`].
    /// Keys are fixed at insert: only for what never changes (tags, the invoice of a log).
    pub fn insert_keyed(
        &mut self,
        id: &str,
        at: OffsetDateTime,
        ws: Ws,
        item: T,
        keys: impl IntoIterator<Item = impl AsRef<str>>,
    ) {
        let position = self.rows.len();
        for key in keys {
            let positions = self.keys.entry(Key::of(key.as_ref())).or_default();
            if positions.last() != Some(&position) {
                positions.push(position);
            }
        }
        self.insert(id, at, ws, item);
    }

    /// A live row by id.
    pub fn get(&self, id: &str) -> Option<&Row<T>> {
        self.index
            .get(&Key::of(id))
            .map(|&i| &self.rows[i])
            .filter(|r| !r.deleted)
    }

    /// A live row by id, mutable.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Row<T>> {
        self.index
            .get(&Key::of(id))
            .map(|&i| &mut self.rows[i])
            .filter(|r| !r.deleted)
    }

    /// A live row by id, if it belongs to `ws`: what an API lookup sees.
    pub fn get_in(&self, id: &str, ws: Ws) -> Option<&Row<T>> {
        self.get(id).filter(|r| r.ws == ws)
    }

    /// A live row by id, mutable, if it belongs to `ws`.
    pub fn get_mut_in(&mut self, id: &str, ws: Ws) -> Option<&mut Row<T>> {
        self.get_mut(id).filter(|r| r.ws == ws)
    }

    /// The workspace of a row by id, deleted or not.
    pub fn owner(&self, id: &str) -> Option<Ws> {
        self.index.get(&Key::of(id)).map(|&i| self.rows[i].ws)
    }

    /// Live rows found under `key` ([`Table::insert_keyed`]), oldest first: a lookup that
    /// costs the rows carrying the key, not the table.
    pub fn keyed<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a Row<T>> + 'a {
        self.keys
            .get(&Key::of(key))
            .into_iter()
            .flatten()
            .map(|&i| &self.rows[i])
            .filter(|r| !r.deleted)
    }

    /// Live rows, oldest first.
    pub fn live(&self) -> impl DoubleEndedIterator<Item = &Row<T>> {
        self.rows.iter().filter(|r| !r.deleted)
    }

    /// One page of the live rows of `scope.ws` created by `scope.created_by` that pass `keep`
    /// and the date filters, in the order `params` asks for.
    pub fn page<'a>(
        &'a self,
        params: &ListParams,
        scope: Scope,
        keep: impl Fn(&T) -> bool,
    ) -> (Vec<&'a T>, Option<String>) {
        let len = self.rows.len();
        let positions: Box<dyn Iterator<Item = usize>> = match (params.ascending, params.cursor) {
            (false, None) => Box::new((0..len).rev()),
            (false, Some(c)) => Box::new((0..c.min(len)).rev()),
            (true, None) => Box::new(0..len),
            (true, Some(c)) => Box::new(c.saturating_add(1)..len),
        };
        self.page_over(positions, params, scope, keep)
    }

    /// [`Table::page`] over the rows inserted under any of `keys` only (all rows when `keys` is
    /// empty). `keep` still decides: the keys only narrow where to look.
    pub fn page_keyed<'a>(
        &'a self,
        keys: &[String],
        params: &ListParams,
        scope: Scope,
        keep: impl Fn(&T) -> bool,
    ) -> (Vec<&'a T>, Option<String>) {
        if keys.is_empty() {
            return self.page(params, scope, keep);
        }
        let mut found: Vec<usize> = keys
            .iter()
            .filter_map(|k| self.keys.get(&Key::of(k)))
            .flatten()
            .copied()
            .collect();
        found.sort_unstable();
        found.dedup();
        let positions: Box<dyn Iterator<Item = usize>> = match (params.ascending, params.cursor) {
            (false, None) => Box::new(found.into_iter().rev()),
            (false, Some(c)) => Box::new(found.into_iter().filter(move |&i| i < c).rev()),
            (true, None) => Box::new(found.into_iter()),
            (true, Some(c)) => Box::new(found.into_iter().filter(move |&i| i > c)),
        };
        self.page_over(positions, params, scope, keep)
    }

    fn page_over<'a>(
        &'a self,
        positions: Box<dyn Iterator<Item = usize> + '_>,
        params: &ListParams,
        scope: Scope,
        keep: impl Fn(&T) -> bool,
    ) -> (Vec<&'a T>, Option<String>) {
        let mut matching = positions.filter(|&i| {
            let row = &self.rows[i];
            !row.deleted
                && row.ws == scope.ws
                && scope.created_by.is_none_or(|by| row.at <= by)
                && params.after.is_none_or(|d| row.at.date() >= d)
                && params.before.is_none_or(|d| row.at.date() <= d)
                && keep(&row.item)
        });
        let mut items = Vec::new();
        let mut last = None;
        for i in matching.by_ref().take(params.limit) {
            items.push(&self.rows[i].item);
            last = Some(i);
        }
        let cursor = match (last, matching.next()) {
            (Some(last), Some(_)) => Some(encode_cursor(last)),
            _ => None,
        };
        (items, cursor)
    }
}

/// Which rows a page may show: those of one workspace, and (for resources with a listing lag)
/// only those created by a given instant.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    /// The workspace asking.
    pub ws: Ws,
    /// Rows created after this are not listed yet; `None` lists everything.
    pub created_by: Option<OffsetDateTime>,
}

impl Scope {
    /// Every row of `ws`.
    pub fn all(ws: Ws) -> Self {
        Self {
            ws,
            created_by: None,
        }
    }
}

/// The common list parameters: `limit`, `cursor`, `after`, `before`, and the sort direction.
#[derive(Debug, Clone)]
pub struct ListParams {
    /// 1 to 100; Stark's default and maximum is 100.
    pub limit: usize,
    /// Position of the last row of the previous page.
    pub cursor: Option<usize>,
    /// Created on or after this UTC date.
    pub after: Option<time::Date>,
    /// Created on or before this UTC date.
    pub before: Option<time::Date>,
    /// Oldest first instead of Stark's default newest first.
    pub ascending: bool,
}

/// Encodes a position as an opaque cursor.
pub fn encode_cursor(position: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("sandbox-cursor:{position}"))
}

/// Decodes a cursor made by [`Table::page`] (or [`encode_cursor`]); anything else is `invalidCursor`.
pub fn decode_cursor(text: &str) -> Result<usize, ApiError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.strip_prefix("sandbox-cursor:")
                .and_then(|n| n.parse().ok())
        })
        .ok_or_else(|| ApiError::bad("invalidCursor", format!("Cursor {text:?} is not valid.")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: Ws = Ws(0);
    const ALL: Scope = Scope {
        ws: WS,
        created_by: None,
    };

    fn params(limit: usize, cursor: Option<String>) -> ListParams {
        ListParams {
            limit,
            cursor: cursor.map(|c| decode_cursor(&c).unwrap()),
            after: None,
            before: None,
            ascending: false,
        }
    }

    #[test]
    fn keyed_pages_are_the_filtered_pages_without_the_scan() {
        let mut t = Table::default();
        let now = OffsetDateTime::now_utc();
        for i in 0..20u32 {
            let keys = [format!("mod3-{}", i % 3), format!("mod5-{}", i % 5)];
            t.insert_keyed(&i.to_string(), now, WS, i, keys);
        }
        let keys = ["mod3-0".to_owned(), "mod5-0".to_owned()];
        let wanted = |i: &u32| i.is_multiple_of(3) || i.is_multiple_of(5);
        for ascending in [false, true] {
            let (mut keyed, mut scanned): (Vec<&u32>, Vec<&u32>) = (Vec::new(), Vec::new());
            let (mut kc, mut sc) = (None, None);
            loop {
                let mut p = params(4, kc.take());
                p.ascending = ascending;
                let (items, next) = t.page_keyed(&keys, &p, ALL, |_| true);
                keyed.extend(items);
                let mut p = params(4, sc.take());
                p.ascending = ascending;
                let (items, next_scan) = t.page(&p, ALL, wanted);
                scanned.extend(items);
                assert_eq!(next.is_some(), next_scan.is_some());
                match (next, next_scan) {
                    (Some(a), Some(b)) => (kc, sc) = (Some(a), Some(b)),
                    _ => break,
                }
            }
            assert_eq!(keyed, scanned, "ascending {ascending}");
            assert_eq!(keyed.len(), 9);
        }
        // No keys: every row, as `page`.
        assert_eq!(
            t.page_keyed(&[], &params(50, None), ALL, |_| true).0.len(),
            20
        );
        let (none, _) = t.page_keyed(&["absent".into()], &params(50, None), ALL, |_| true);
        assert!(none.is_empty());
    }

    #[test]
    fn ids_that_spell_one_number_differently_are_different_rows() {
        const IDS: [&str; 8] = [
            "123",
            "0123",
            "+123",
            "00",
            "0",
            "",
            "x1",
            "18446744073709551616",
        ];
        let mut t = Table::default();
        let now = OffsetDateTime::now_utc();
        for (i, id) in IDS.into_iter().enumerate() {
            t.insert_keyed(id, now, WS, i, [id]);
        }
        for (i, id) in IDS.into_iter().enumerate() {
            assert_eq!(t.get(id).map(|r| r.item), Some(i), "{id:?}");
            let keyed: Vec<usize> = t.keyed(id).map(|r| r.item).collect();
            assert_eq!(keyed, [i], "{id:?}");
        }
        assert!(t.get("1230").is_none() && t.get(" 123").is_none());
    }

    #[test]
    fn pages_newest_first_and_survive_inserts_between_pages() {
        let mut t = Table::default();
        let now = OffsetDateTime::now_utc();
        for i in 0..5 {
            t.insert(&i.to_string(), now, WS, i);
        }
        let (first, cursor) = t.page(&params(2, None), ALL, |_| true);
        assert_eq!(first, [&4, &3]);
        t.insert("5", now, WS, 5);
        let (second, cursor) = t.page(&params(2, cursor), ALL, |_| true);
        assert_eq!(second, [&2, &1]);
        let (third, cursor) = t.page(&params(2, cursor), ALL, |_| true);
        assert_eq!(third, [&0]);
        assert!(cursor.is_none());
        let (evens, cursor) = t.page(&params(3, None), ALL, |i| i % 2 == 0);
        assert_eq!(evens, [&4, &2, &0]);
        assert!(
            cursor.is_none(),
            "no cursor when the page ends the list exactly"
        );
        assert!(decode_cursor("garbage").is_err());
    }

    #[test]
    fn pages_show_one_workspace_and_only_rows_created_by_the_scope_instant() {
        let mut t = Table::default();
        let t0 = OffsetDateTime::now_utc();
        let later = t0 + time::Duration::seconds(5);
        t.insert("a", t0, Ws(0), "a");
        t.insert("b", t0, Ws(1), "b");
        t.insert("c", later, Ws(0), "c");
        let page = |scope| t.page(&params(10, None), scope, |_| true).0;
        assert_eq!(page(Scope::all(Ws(0))), [&"c", &"a"]);
        assert_eq!(page(Scope::all(Ws(1))), [&"b"]);
        let lagging = Scope {
            ws: Ws(0),
            created_by: Some(t0),
        };
        assert_eq!(page(lagging), [&"a"], "c is not listed before its time");
        assert!(
            t.get_in("b", Ws(0)).is_none(),
            "another workspace's row is not found"
        );
        assert_eq!(t.get_in("b", Ws(1)).map(|r| r.item), Some("b"));
    }
}
