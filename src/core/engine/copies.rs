//! The copy index: for each copy key of a stored wording (its first words
//! and its last words, articles left out), the headlines that hold it. It
//! nominates near-duplicate candidates beyond the story window, where the
//! vector search does not look: a truncated or lightly edited wire copy
//! keeps one end of its original. The near-duplicate rules decide.
//!
//! Exact duplicates are not holders: they copy a holder's wording.

use std::collections::HashMap;

use crate::core::normalize::{Normalized, stable_hash};

/// Words at each end of a wording that make a copy key.
const KEY_WORDS: usize = 5;

/// Holders of one key checked per headline, newest first: a key that many
/// wordings share (a template) names look-alikes, not copies.
const NOMINEES_PER_KEY: usize = 4;

/// Words that copy editors drop or add without changing a headline.
const ARTICLES: [&str; 3] = ["the", "a", "an"];

/// The copy keys of a wording: one from its first words and one from its
/// last; a single one when it is short enough for the two to be one.
pub(super) fn copy_keys(norm: &Normalized) -> Vec<u64> {
    let words: Vec<&str> = norm.tokens().filter(|t| !ARTICLES.contains(t)).collect();
    let key = |tag: &[u8], words: &[&str]| {
        let mut bytes = tag.to_vec();
        for word in words {
            bytes.push(b' ');
            bytes.extend_from_slice(word.as_bytes());
        }
        stable_hash(&bytes)
    };
    let tail = words.len().checked_sub(KEY_WORDS).and_then(|from| words.get(from..));
    match (words.get(..KEY_WORDS), tail) {
        (Some(head), Some(tail)) if words.len() > KEY_WORDS => vec![key(b"head", head), key(b"tail", tail)],
        _ => vec![key(b"all", &words)],
    }
}

/// Copy key → holders, ascending.
#[derive(Debug, Default)]
pub(super) struct CopyIndex {
    holders: HashMap<u64, Vec<u64>>,
}

impl CopyIndex {
    /// Records `seq` as a holder of the copy keys of `norm`.
    pub(super) fn insert(&mut self, norm: &Normalized, seq: u64) {
        for key in copy_keys(norm) {
            let holders = self.holders.entry(key).or_default();
            if let Err(at) = holders.binary_search(&seq) {
                holders.insert(at, seq);
            }
        }
    }

    /// Forgets `seq` as a holder of the copy keys of `norm`.
    pub(super) fn forget(&mut self, norm: &Normalized, seq: u64) {
        for key in copy_keys(norm) {
            if let Some(holders) = self.holders.get_mut(&key) {
                holders.retain(|&s| s != seq);
                if holders.is_empty() {
                    self.holders.remove(&key);
                }
            }
        }
    }

    /// The holders that share a copy key with `norm`, newest first per key,
    /// at most [`NOMINEES_PER_KEY`] of each.
    pub(super) fn nominees(&self, norm: &Normalized) -> Vec<u64> {
        let mut nominees: Vec<u64> = Vec::new();
        for key in copy_keys(norm) {
            let Some(holders) = self.holders.get(&key) else { continue };
            for &seq in holders.iter().rev().take(NOMINEES_PER_KEY) {
                if !nominees.contains(&seq) {
                    nominees.push(seq);
                }
            }
        }
        nominees
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::normalize::normalize;

    #[test]
    fn a_truncated_copy_and_a_copy_with_another_opening_share_a_key_with_the_original() {
        let original = normalize("Rescuers try to save a stranded whale on Chiba beach after storm", None);
        let truncated = normalize("Rescuers try to save stranded whale on Chiba ...", None);
        let reworded = normalize("Volunteers try to save a stranded whale on Chiba beach after storm", None);
        let other = normalize("Rescuers try to save hikers trapped on Mount Fuji", None);
        let mut index = CopyIndex::default();
        index.insert(&original, 1);
        index.insert(&other, 2);
        assert_eq!(index.nominees(&truncated), vec![1], "the first words, articles left out");
        assert_eq!(index.nominees(&reworded), vec![1], "the last words");
        assert!(index.nominees(&normalize("Whale watching season opens in Chiba", None)).is_empty());
        index.forget(&original, 1);
        index.forget(&other, 2);
        assert!(index.holders.is_empty(), "forgetting every holder leaves nothing");
    }
}
