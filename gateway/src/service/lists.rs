//! Lists: pages of a collection, in id order, holding only what the policy set lets the
//! caller read.
//!
//! It owns paging — the cursor, the page size and how far one page may read — for every
//! list endpoint ([`Pager`]). It must not decide who sees what (each list asks the policy set per item)
//! nor audit (each list records its own page).

use serde::Deserialize;

use crate::error::{ServiceError, ServiceResult};

/// The most items one page holds, and how many when the caller does not say.
pub const MAX_LIST: u32 = 100;
pub const DEFAULT_LIST: u32 = 50;

/// A page's place: `?after=&limit=` (every list's query flattens this).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct PageQuery {
    /// The `next_after` of the previous page.
    pub after: Option<i64>,
    /// At most this many items (1 to [`MAX_LIST`], default [`DEFAULT_LIST`]).
    pub limit: Option<u32>,
}

/// One page being read: the caller fetches the batches it names (rows after a cursor, in
/// id order), reports each row it looked at with [`Pager::saw`] and keeps what the policy
/// set lets its caller read, until [`Pager::next_batch`] says the page is done. One page
/// reads at most ten pages' worth of rows: a caller who may see few items gets a short
/// page and a cursor, not an unbounded scan.
#[derive(Debug)]
pub(crate) struct Pager {
    limit: u32,
    after: i64,
    budget: u32,
    exhausted: bool,
    full: bool,
}

impl Pager {
    pub(crate) fn new(query: PageQuery) -> ServiceResult<Self> {
        let limit = query.limit.unwrap_or(DEFAULT_LIST);
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(ServiceError::invalid(format!("limit is 1 to {MAX_LIST}")));
        }
        Ok(Self { limit, after: query.after.unwrap_or(0), budget: limit * 10, exhausted: false, full: false })
    }

    /// The next batch to read, `(after, how many)`, given how many items are kept so far;
    /// `None` once the page is full, the rows ran out or the page read all it may.
    pub(crate) fn next_batch(&mut self, kept: usize) -> Option<(i64, u32)> {
        self.full = kept as u32 >= self.limit;
        if self.full || self.exhausted || self.budget == 0 {
            return None;
        }
        let batch = self.limit.min(self.budget);
        self.budget -= batch;
        Some((self.after, batch))
    }

    /// A batch came back with `rows` rows (fewer than asked: there are no more).
    pub(crate) fn fetched(&mut self, rows: usize, asked: u32) {
        self.exhausted = (rows as u32) < asked;
    }

    /// The row with id `id` was looked at (kept or not).
    pub(crate) fn saw(&mut self, id: i64) {
        self.after = id;
    }

    /// Whether `kept` items fill the page (stop reading the batch).
    pub(crate) fn is_full(&self, kept: usize) -> bool {
        kept as u32 >= self.limit
    }

    /// The cursor of the next page, if there may be one.
    pub(crate) fn next_after(&self, kept: usize) -> Option<i64> {
        (self.is_full(kept) || !self.exhausted).then_some(self.after)
    }
}

/// Refuses a `state` filter that names no state a list can show.
pub(crate) fn check_state_filter(state: Option<&str>, shown: &[&str]) -> ServiceResult<()> {
    match state {
        Some(state) if !shown.contains(&state) => {
            Err(ServiceError::invalid(format!("`{state}` is not a state this list shows ({})", shown.join(", "))))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a pager over ids 1..=rows, keeping those `keep` admits.
    fn read(query: PageQuery, rows: i64, keep: impl Fn(i64) -> bool) -> (Vec<i64>, Option<i64>, u32) {
        let mut pager = Pager::new(query).expect("valid");
        let (mut kept, mut batches) = (Vec::new(), 0);
        while let Some((after, batch)) = pager.next_batch(kept.len()) {
            batches += 1;
            let fetched: Vec<i64> = (after + 1..=rows).take(batch as usize).collect();
            pager.fetched(fetched.len(), batch);
            for id in fetched {
                pager.saw(id);
                if keep(id) {
                    kept.push(id);
                    if pager.is_full(kept.len()) {
                        break;
                    }
                }
            }
        }
        let next = pager.next_after(kept.len());
        (kept, next, batches)
    }

    #[test]
    fn a_full_page_names_its_last_item_as_the_cursor() {
        let (kept, next, _) = read(PageQuery { after: None, limit: Some(3) }, 10, |_| true);
        assert_eq!((kept, next), (vec![1, 2, 3], Some(3)));
        let (kept, next, _) = read(PageQuery { after: Some(9), limit: Some(3) }, 10, |_| true);
        assert_eq!((kept, next), (vec![10], None), "the last page has no cursor");
    }

    #[test]
    fn a_page_reads_at_most_ten_pages_of_rows() {
        let (kept, next, batches) = read(PageQuery { after: None, limit: Some(2) }, 1000, |id| id % 100 == 0);
        assert_eq!(kept, Vec::<i64>::new(), "nothing kept among the first 20 rows");
        assert_eq!((next, batches), (Some(20), 10), "a short page and a cursor, not a scan");
        let (kept, next, _) = read(PageQuery { after: None, limit: Some(50) }, 1000, |id| id % 100 == 0);
        assert_eq!((kept, next), (vec![100, 200, 300, 400, 500], Some(500)));
    }

    #[test]
    fn a_limit_out_of_range_is_refused() {
        assert!(Pager::new(PageQuery { after: None, limit: Some(0) }).is_err());
        assert!(Pager::new(PageQuery { after: None, limit: Some(MAX_LIST + 1) }).is_err());
        assert!(Pager::new(PageQuery::default()).is_ok());
    }
}
