//! How the namespace writes each word: capitalised or not, inside a
//! sentence-case headline (the first word of a headline is capitalised
//! whatever it is, and in Title Case every word is). A word the feed writes
//! capitalised inside sentences is a name; one it writes in lower case is
//! not, even where a headline capitalises it. The counts grow and shrink
//! with the stored headlines, like the word frequencies.

use std::collections::HashMap;

use crate::core::normalize::{Normalized, stable_hash};

/// Words are counted in this many buckets (a power of two).
const BUCKETS: u64 = 1 << 20;

/// Capitalised and lower-case counts of the words, inside sentence-case
/// headlines.
#[derive(Debug, Clone, Default)]
pub struct CaseStats {
    counts: HashMap<u32, (u32, u32), foldhash::fast::FixedState>,
}

/// What a headline's capitals say of its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Capitals mark names (the first word aside).
    Sentence,
    /// Every word, or most, is capitalised: capitals mark nothing.
    Title,
}

/// The style of a headline: Title Case when every word of four letters or
/// more after the first is capitalised ("Toyota to Move US Headquarters
/// to Texas"); a lower-case one says the capitals mark names ("Manchester
/// United beat Liverpool at Old Trafford").
fn style(norm: &Normalized) -> Style {
    let mut long = norm.cased_tokens().skip(1).filter(|(word, _)| word.chars().count() >= 4).peekable();
    if long.peek().is_some() && long.all(|(_, capitalised)| capitalised) { Style::Title } else { Style::Sentence }
}

impl CaseStats {
    fn bucket(word: &str) -> u32 {
        // The mask keeps the bucket below 2^20, inside u32.
        (stable_hash(word.as_bytes()) & (BUCKETS - 1)) as u32
    }

    /// The words of a sentence-case headline after its first, each with
    /// whether it is capitalised; none for a Title Case one.
    fn observations(norm: &Normalized) -> impl Iterator<Item = (&str, bool)> {
        let sentence = style(norm) == Style::Sentence;
        norm.cased_tokens().skip(1).filter(move |_| sentence)
    }

    /// Counts a headline's words in.
    pub fn add(&mut self, norm: &Normalized) {
        for (word, capitalised) in Self::observations(norm) {
            let counts = self.counts.entry(Self::bucket(word)).or_default();
            if capitalised {
                counts.0 = counts.0.saturating_add(1);
            } else {
                counts.1 = counts.1.saturating_add(1);
            }
        }
    }

    /// Counts a headline's words out (one that was counted in).
    pub fn remove(&mut self, norm: &Normalized) {
        for (word, capitalised) in Self::observations(norm) {
            let bucket = Self::bucket(word);
            if let Some(counts) = self.counts.get_mut(&bucket) {
                if capitalised {
                    counts.0 = counts.0.saturating_sub(1);
                } else {
                    counts.1 = counts.1.saturating_sub(1);
                }
                if *counts == (0, 0) {
                    self.counts.remove(&bucket);
                }
            }
        }
    }

    /// Which words of a headline name something: a capitalised word that
    /// the feed does not write in lower case more often than capitalised
    /// (a word it has never seen counts by the headline's capitals), and,
    /// in Title Case, a word the feed writes capitalised more often than
    /// not. Numbers never: one story's numbers change as it goes on.
    pub fn names(&self, norm: &Normalized) -> Vec<bool> {
        let title = style(norm) == Style::Title;
        norm.cased_tokens()
            .map(|(word, capitalised)| {
                if !capitalised || word.bytes().any(|c| c.is_ascii_digit()) {
                    return false;
                }
                let (upper, lower) = self.counts.get(&Self::bucket(word)).copied().unwrap_or((0, 0));
                if title { upper > lower } else { lower <= upper }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::normalize::normalize;

    fn names(stats: &CaseStats, text: &str) -> Vec<String> {
        let norm = normalize(text, None);
        let flags = stats.names(&norm);
        norm.tokens().zip(flags).filter(|(_, name)| *name).map(|(w, _)| w.to_owned()).collect()
    }

    #[test]
    fn the_feed_tells_names_from_words_that_start_a_sentence() {
        let mut stats = CaseStats::default();
        let feed = [
            "Shares of Toyota rise after the merger talks",
            "Analysts say the merger will close soon",
            "Government backs merger of two Ohio banks",
        ];
        let seen: Vec<_> = feed.iter().map(|t| normalize(t, None)).collect();
        seen.iter().for_each(|n| stats.add(n));
        assert_eq!(names(&stats, "Merger creates Ohio's biggest bank"), vec!["ohios"], "merger is a word here");
        assert_eq!(names(&stats, "Toyota profit falls"), vec!["toyota"]);
        assert_eq!(names(&stats, "Honda profit falls"), vec!["honda"], "a word never seen counts by its capital");
        assert_eq!(names(&stats, "Toyota Shares Rise On Merger News"), vec!["toyota"], "Title Case: only known names");
        assert_eq!(names(&stats, "Dow rises 300 points"), vec!["dow"], "numbers are not names");
        seen.iter().for_each(|n| stats.remove(n));
        assert!(stats.counts.is_empty(), "removing undoes adding");
    }
}
