//! Headline id → sequence number, without a second copy of each id: the
//! table holds sequence numbers only, and an entry's id is read from its
//! record when the table compares or rehashes.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::Numbered;
use super::ledger::Record;

#[derive(Default)]
pub(super) struct IdIndex {
    table: HashTable<u64>,
    hasher: RandomState,
}

impl IdIndex {
    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// The sequence number of the stored headline `id`.
    pub(super) fn get(&self, id: &str, records: &Numbered<u64, Record>) -> Option<u64> {
        self.table.find(self.hash(id), |seq| records.get(seq).is_some_and(|r| r.headline.id == id)).copied()
    }

    /// Adds `seq`, whose record (with its id) is already in `records` and
    /// whose id is not in the index yet.
    pub(super) fn insert(&mut self, seq: u64, records: &Numbered<u64, Record>) {
        let id_hash = |seq: &u64| records.get(seq).map_or(0, |r| self.hasher.hash_one(r.headline.id.as_str()));
        let hash = id_hash(&seq);
        self.table.insert_unique(hash, seq, id_hash);
    }

    /// Removes `seq`, stored under `id`.
    pub(super) fn remove(&mut self, id: &str, seq: u64) {
        if let Ok(entry) = self.table.find_entry(self.hash(id), |&s| s == seq) {
            entry.remove();
        }
    }
}
