//! The one pagination style of every list: `?limit=&offset=` in, a page with its place out.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A page of a list: the items, how many there are in all, and where this page is.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// This page.
    pub items: Vec<T>,
    /// All matching items.
    pub total: u64,
    /// Page size.
    pub limit: u32,
    /// Items skipped before this page.
    pub offset: u64,
    /// Whether more pages follow (ask again with `offset` + `limit`).
    pub has_more: bool,
}

impl<T> Page<T> {
    /// A page that the store cut: `items` start at `offset` of `total`.
    pub fn new(items: Vec<T>, total: u64, limit: u32, offset: u64) -> Self {
        let has_more = offset + (items.len() as u64) < total;
        Page { items, total, limit, offset, has_more }
    }

    /// The page of a list held whole in memory.
    pub fn of(all: Vec<T>, limit: u32, offset: u64) -> Self {
        let total = all.len() as u64;
        let items =
            all.into_iter().skip(offset.try_into().unwrap_or(usize::MAX)).take(limit as usize).collect();
        Page::new(items, total, limit, offset)
    }

    /// The same page with every item turned into something else.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        let Page { items, total, limit, offset, has_more } = self;
        Page { items: items.into_iter().map(f).collect(), total, limit, offset, has_more }
    }
}

/// Query of paged lists.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// Page size (1-1000, default 50).
    pub limit: Option<i64>,
    /// Items to skip (default 0).
    pub offset: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_knows_whether_more_follow() {
        let p = Page::of((0..7).collect::<Vec<u32>>(), 3, 3);
        assert_eq!((p.items, p.total, p.limit, p.offset, p.has_more), (vec![3, 4, 5], 7, 3, 3, true));
        let last = Page::of((0..7).collect::<Vec<u32>>(), 3, 6);
        assert_eq!((last.items, last.has_more), (vec![6], false));
        let past = Page::of((0..7).collect::<Vec<u32>>(), 3, 99);
        assert_eq!((past.items.len(), past.total, past.has_more), (0, 7, false));
    }
}
