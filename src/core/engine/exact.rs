//! The exact-text index: for each normalised wording (its exact key), the
//! newest stored headline that holds it, and the older holders to fall back
//! on when that one leaves, so that removing a headline leaves the index as
//! if it had never been stored.
//!
//! Exact duplicates are not holders: they copy a holder's wording.

use std::collections::HashMap;

/// Wording key → holders.
#[derive(Debug, Default)]
pub(super) struct ExactIndex {
    /// Exact key → the newest holder.
    newest: HashMap<u64, u64>,
    /// Exact key → the older holders, ascending; only for the keys that
    /// have any.
    older: HashMap<u64, Vec<u64>>,
}

impl ExactIndex {
    /// The newest holder of wording `key`.
    pub(super) fn holder(&self, key: u64) -> Option<u64> {
        self.newest.get(&key).copied()
    }

    /// Records `seq`, newer than every holder recorded before, as a holder
    /// of wording `key`.
    pub(super) fn insert(&mut self, key: u64, seq: u64) {
        if let Some(previous) = self.newest.insert(key, seq) {
            self.older.entry(key).or_default().push(previous);
        }
    }

    /// Forgets `seq` as a holder of wording `key`: the newest holder falls
    /// back to the newest older one.
    pub(super) fn forget(&mut self, key: u64, seq: u64) {
        let older = self.older.get_mut(&key);
        if self.newest.get(&key) == Some(&seq) {
            match older.and_then(Vec::pop) {
                Some(previous) => self.newest.insert(key, previous),
                None => self.newest.remove(&key),
            };
        } else if let Some(older) = older {
            older.retain(|&s| s != seq);
        }
        if self.older.get(&key).is_some_and(Vec::is_empty) {
            self.older.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_a_holder_falls_back_to_the_previous_one_as_if_it_never_came() {
        let mut exact = ExactIndex::default();
        for seq in [1, 4, 9] {
            exact.insert(7, seq);
        }
        exact.insert(8, 5);
        assert_eq!((exact.holder(7), exact.holder(8), exact.holder(6)), (Some(9), Some(5), None));
        exact.forget(7, 4);
        assert_eq!(exact.holder(7), Some(9), "an older holder leaves quietly");
        exact.forget(7, 9);
        assert_eq!(exact.holder(7), Some(1), "the newest leaves: the one before takes over");
        exact.forget(7, 1);
        assert_eq!(exact.holder(7), None);
        assert!(exact.older.is_empty() && exact.newest.len() == 1, "nothing is left of wording 7");
        exact.forget(8, 99);
        assert_eq!(exact.holder(8), Some(5), "forgetting a stranger changes nothing");
    }
}
