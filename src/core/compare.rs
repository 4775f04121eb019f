//! Text comparisons behind the near-duplicate tier: string similarity of
//! normalised texts, and the veto that keeps templated headlines apart
//! ("Trump wins Ohio" is not "Trump wins Iowa"), and the look-alike test
//! of the story tier (the same wording with other names).

use crate::core::normalize::Normalized;

/// Normalised Levenshtein similarity of two normalised texts, in `[0, 1]`.
/// A truncated headline that is a word-prefix of the other (`Fed official
/// says weak data...`) counts as the length of the shorter one.
pub fn string_similarity(a: &str, b: &str) -> f32 {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.split(' ').count() >= 5 && long.strip_prefix(short).is_some_and(|rest| rest.starts_with(' ')) {
        return 1.0;
    }
    match levenshtein_ascii(a, b) {
        // strsim's normalisation, on lengths that count characters.
        Some(distance) => (1.0 - distance as f64 / a.len().max(b.len()).max(1) as f64) as f32,
        None => strsim::normalized_levenshtein(a, b) as f32,
    }
}

/// The Levenshtein distance of two ASCII texts, the shorter at most 128
/// bytes long, or `None` for other texts: Myers' bit-parallel algorithm
/// (in Hyyrö's form for the whole-string distance), a few word operations
/// per byte of the longer text instead of a row of the dynamic program.
/// The same numbers as `strsim::levenshtein`.
fn levenshtein_ascii(a: &str, b: &str) -> Option<usize> {
    if !a.is_ascii() || !b.is_ascii() {
        return None;
    }
    let (pattern, text) = if a.len() <= b.len() { (a.as_bytes(), b.as_bytes()) } else { (b.as_bytes(), a.as_bytes()) };
    let Some(last_index) = pattern.len().checked_sub(1) else { return Some(text.len()) };
    if pattern.len() > 128 {
        return None;
    }
    let mut positions = [0u128; 128];
    for (i, &byte) in pattern.iter().enumerate() {
        // ASCII bytes are below 128: every lookup here finds its slot.
        if let Some(slot) = positions.get_mut(usize::from(byte)) {
            *slot |= 1 << i;
        }
    }
    let last = 1u128 << last_index;
    let (mut plus, mut minus, mut distance) = (!0u128, 0u128, pattern.len());
    for &byte in text {
        let equal = positions.get(usize::from(byte)).copied().unwrap_or(0);
        let vertical = equal | minus;
        let horizontal = ((equal & plus).wrapping_add(plus) ^ plus) | equal;
        let up = minus | !(horizontal | plus);
        let down = plus & horizontal;
        if up & last != 0 {
            distance += 1;
        } else if down & last != 0 {
            distance -= 1;
        }
        let up = (up << 1) | 1;
        plus = (down << 1) | !(vertical | up);
        minus = up & vertical;
    }
    Some(distance)
}

/// Why two similar headlines must not be called near-duplicates, if they
/// must not: a number that appears in only one of them, or a content word
/// replaced by an unrelated one (a different name, place or verb).
pub fn near_duplicate_veto(a: &str, b: &str) -> Option<&'static str> {
    let a: Vec<&str> = a.split(' ').filter(|t| !t.is_empty()).collect();
    let b: Vec<&str> = b.split(' ').filter(|t| !t.is_empty()).collect();
    let numbers = |words: &[&str]| -> Vec<String> {
        let mut n: Vec<String> =
            words.iter().filter(|w| w.bytes().any(|c| c.is_ascii_digit())).map(|w| w.to_string()).collect();
        n.sort();
        n
    };
    if numbers(&a) != numbers(&b) {
        return Some("numbers differ");
    }
    for (removed, added) in replaced_runs(&a, &b) {
        let removed: Vec<&str> = removed.into_iter().filter(|w| !is_stopword(w)).collect();
        let added: Vec<&str> = added.into_iter().filter(|w| !is_stopword(w)).collect();
        let unrelated = removed.iter().any(|r| !added.iter().any(|a| is_variant(r, a)));
        if !removed.is_empty() && !added.is_empty() && unrelated {
            return Some("a word was replaced by an unrelated word");
        }
    }
    None
}

/// The places where `b` replaces words of `a`: pairs of (words only in `a`,
/// words only in `b`) between two common words of a longest common
/// subsequence. Pure insertions or deletions are not replacements.
fn replaced_runs<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(Vec<&'a str>, Vec<&'a str>)> {
    let pick = |words: &[&'a str], at: &[usize]| at.iter().filter_map(|&i| words.get(i).copied()).collect();
    alignment(a, b)
        .1
        .iter()
        .filter(|(ra, rb)| !ra.is_empty() && !rb.is_empty())
        .map(|(ra, rb)| (pick(a, ra), pick(b, rb)))
        .collect()
}

/// A place where two word sequences differ: the positions only in the
/// first, and those only in the second.
type Run = (Vec<usize>, Vec<usize>);

/// The length of a longest common subsequence of `a` and `b`, and the
/// places where they differ: pairs of (positions only in `a`, positions
/// only in `b`) between two common words of that subsequence (or an end),
/// one side possibly empty.
fn alignment(a: &[&str], b: &[&str]) -> (usize, Vec<Run>) {
    let width = b.len() + 1;
    // lcs[i * width + j] = LCS length of a[i..] and b[j..]; past either end
    // it is 0.
    let mut lcs = vec![0u16; (a.len() + 1) * width];
    let at = |lcs: &[u16], i: usize, j: usize| lcs.get(i * width + j).copied().unwrap_or(0);
    for (i, word_a) in a.iter().enumerate().rev() {
        for (j, word_b) in b.iter().enumerate().rev() {
            let value =
                if word_a == word_b { at(&lcs, i + 1, j + 1) + 1 } else { at(&lcs, i + 1, j).max(at(&lcs, i, j + 1)) };
            if let Some(cell) = lcs.get_mut(i * width + j) {
                *cell = value;
            }
        }
    }
    let common = usize::from(at(&lcs, 0, 0));
    let (mut i, mut j) = (0, 0);
    let mut runs = Vec::new();
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    loop {
        match (a.get(i), b.get(j)) {
            (None, None) => break,
            (Some(x), Some(y)) if x == y => {
                if !removed.is_empty() || !added.is_empty() {
                    runs.push((std::mem::take(&mut removed), std::mem::take(&mut added)));
                }
                i += 1;
                j += 1;
            }
            (None, Some(_)) => {
                added.push(j);
                j += 1;
            }
            (Some(_), Some(_)) if at(&lcs, i, j + 1) >= at(&lcs, i + 1, j) => {
                added.push(j);
                j += 1;
            }
            (Some(_), _) => {
                removed.push(i);
                i += 1;
            }
        }
    }
    if !removed.is_empty() || !added.is_empty() {
        runs.push((removed, added));
    }
    (common, runs)
}

/// A headline's normalised words, and which of them name something (see
/// `CaseStats::names`).
#[derive(Debug, Clone)]
pub struct Words<'a> {
    words: Vec<&'a str>,
    names: Vec<bool>,
}

impl<'a> Words<'a> {
    /// The words of a normalised text, with which of them are names.
    pub fn new(norm: &'a Normalized, names: Vec<bool>) -> Self {
        Self { words: norm.tokens().collect(), names }
    }

    /// Whether one of the words is `word`.
    pub fn contains(&self, word: &str) -> bool {
        self.words.contains(&word)
    }

    /// A cheap test that `other` can be a look-alike of these words
    /// ([`look_alike`] holds only if this does): at least half of the longer
    /// one's words are words of both, `other` has a capitalised word these
    /// lack, and these have a name `other` lacks.
    pub fn may_look_alike(&self, other: &Normalized) -> bool {
        let theirs: Vec<&str> = other.tokens().collect();
        let shared = theirs.iter().filter(|w| self.contains(w)).count();
        shared >= 2
            && shared * 2 >= self.words.len().max(theirs.len())
            && other.cased_tokens().any(|(word, capitalised)| capitalised && !self.contains(word))
            && self.words.iter().zip(&self.names).any(|(word, &name)| name && !theirs.contains(word))
    }

    /// Whether one of the words is `word` or a form of it.
    pub fn has(&self, word: &str) -> bool {
        self.contains(word) || self.words.iter().any(|w| is_variant(w, word))
    }

    /// Whether one of the words names something the other headline names
    /// nowhere.
    fn has_own_name(&self, other: &Words<'_>) -> bool {
        self.words.iter().zip(&self.names).any(|(word, &name)| name && !other.has(word))
    }

    /// A word of the run at `positions` that names something the other
    /// headline names nowhere.
    fn own_name(&self, positions: &[usize], other: &Words<'_>) -> Option<&'a str> {
        positions
            .iter()
            .filter(|&&i| self.names.get(i).copied().unwrap_or(false))
            .filter_map(|&i| self.words.get(i).copied())
            .find(|w| !other.has(w))
    }

    /// The first letters of the words at `positions` ("gm" for "general
    /// motors").
    fn initials(&self, positions: &[usize]) -> String {
        positions.iter().filter_map(|&i| self.words.get(i)?.chars().next()).collect()
    }

    /// Whether a word at `positions` abbreviates or misspells the words of
    /// `other` at `theirs`: it starts with their initials ("gm" for "general
    /// motors", "osu" for "ohio state"), one of them starts with it ("st"
    /// for "street", "im" for "imf") or is spelt almost like it ("rajeev" /
    /// "rajiv", "spanish" / "spains").
    fn abbreviates(&self, positions: &[usize], other: &Words<'_>, theirs: &[usize]) -> bool {
        let initials = other.initials(theirs);
        let longer: Vec<&str> = theirs.iter().filter_map(|&i| other.words.get(i).copied()).collect();
        positions.iter().filter_map(|&i| self.words.get(i)).any(|w| {
            (theirs.len() > 1 && w.starts_with(&initials))
                || longer.iter().any(|l| (w.len() >= 2 && l.starts_with(*w)) || strsim::jaro_winkler(w, l) >= SAME_NAME)
        })
    }
}

/// Two headlines at least this close (cosine of their vectors) are checked
/// for being look-alikes: the same wording with other names is close.
pub const LOOK_ALIKE_COSINE: f32 = 0.5;

/// The most words a look-alike's name slot holds on either side: "Iowa
/// caucuses" for "Ohio primary" is a slot, "International Court of
/// Justice" for "ICJ" a rewording.
const LOOK_ALIKE_SLOT: usize = 2;

/// Two names at least this alike (Jaro-Winkler) are one name spelt two ways.
const SAME_NAME: f64 = 0.85;

/// Whether two headlines are the same template filled with different names
/// ("Trump wins Iowa caucuses" / "Trump wins Ohio primary", "... off coast
/// of Japan" / "... off coast of Chile"): every place where they differ
/// replaces at most [`LOOK_ALIKE_SLOT`] words with as many (nothing is only
/// added or only dropped), at least half of the longer one's words, and two
/// at least, are common to both, and in one place each side names
/// something the other names nowhere (not an abbreviation of the other
/// side: "GM" for "General Motors"). Returns those two names.
pub fn look_alike<'a, 'b>(a: &Words<'a>, b: &Words<'b>) -> Option<(&'a str, &'b str)> {
    if !a.has_own_name(b) || !b.has_own_name(a) {
        return None;
    }
    let (common, runs) = alignment(&a.words, &b.words);
    let slots = |(ra, rb): &Run| (1..=LOOK_ALIKE_SLOT).contains(&ra.len()) && (1..=LOOK_ALIKE_SLOT).contains(&rb.len());
    if common < 2 || common * 2 < a.words.len().max(b.words.len()) || !runs.iter().all(slots) {
        return None;
    }
    runs.iter()
        .filter(|(ra, rb)| !a.abbreviates(ra, b, rb) && !b.abbreviates(rb, a, ra))
        .find_map(|(ra, rb)| Some((a.own_name(ra, b)?, b.own_name(rb, a)?)))
}

/// Two forms of one word: a shared stem of at least four letters
/// (`northern`/`north`), a word and its extension (`fed`/`feds`), or a
/// one-letter typo.
pub fn is_variant(a: &str, b: &str) -> bool {
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let (len_a, len_b) = (a.chars().count(), b.chars().count());
    let shorter = len_a.min(len_b);
    common >= 4
        || (common >= 3 && common == shorter)
        || (shorter >= 4 && len_a.abs_diff(len_b) <= 1 && strsim::levenshtein(a, b) <= 1)
}

/// Function words whose replacement does not change the story.
fn is_stopword(word: &str) -> bool {
    const STOPWORDS: [&str; 44] = [
        "a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "for", "from", "by", "with", "as", "is",
        "are", "was", "were", "be", "been", "it", "its", "this", "that", "these", "those", "has", "have", "had",
        "will", "would", "can", "could", "may", "might", "after", "over", "into", "about", "up", "out", "s",
    ];
    STOPWORDS.contains(&word)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::core::normalize::normalize;

    #[test]
    fn bit_parallel_distance_equals_the_dynamic_program() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let alphabet = b"abcde fgh";
        for _ in 0..3000 {
            let len = next(140) as usize;
            let a: Vec<u8> = (0..len).map(|_| alphabet[next(alphabet.len() as u64) as usize]).collect();
            // b: a light edit of a, or an unrelated text
            let mut b = if next(4) == 0 { Vec::new() } else { a.clone() };
            for _ in 0..next(12) {
                let at = next(b.len() as u64 + 1) as usize;
                let byte = alphabet[next(alphabet.len() as u64) as usize];
                match next(3) {
                    0 => b.insert(at, byte),
                    1 if at < b.len() => drop(b.remove(at)),
                    _ if at < b.len() => b[at] = byte,
                    _ => b.push(byte),
                }
            }
            let (a, b) = (String::from_utf8(a).expect("ascii"), String::from_utf8(b).expect("ascii"));
            let expected = strsim::levenshtein(&a, &b);
            assert_eq!(levenshtein_ascii(&a, &b).unwrap_or(expected), expected, "{a:?} {b:?}");
            let similarity = string_similarity(&a, &b);
            if a.len().min(b.len()) <= 128 && !(a.split(' ').count() >= 5 && (a.starts_with(&b) || b.starts_with(&a))) {
                assert_eq!(similarity, strsim::normalized_levenshtein(&a, &b) as f32, "{a:?} {b:?}");
            }
        }
        assert_eq!(levenshtein_ascii("", ""), Some(0));
        assert_eq!(levenshtein_ascii("", "abc"), Some(3));
        assert_eq!(levenshtein_ascii("kitten", "sitting"), Some(3));
        assert_eq!(levenshtein_ascii("café", "cafe"), None);
        assert_eq!(levenshtein_ascii(&"a".repeat(129), &"a".repeat(130)), None);
        assert_eq!(string_similarity("", ""), 1.0);
    }

    fn veto(a: &str, b: &str) -> Option<&'static str> {
        near_duplicate_veto(&normalize(a, None).text, &normalize(b, None).text)
    }

    #[test]
    fn templated_headlines_are_vetoed() {
        assert!(veto("Trump wins Ohio", "Trump wins Iowa").is_some());
        assert!(veto("Dow rises 100 points", "Dow rises 120 points").is_some());
        assert!(veto("Fed raises rates", "Fed raises rates by 0.25%").is_some());
    }

    #[test]
    fn light_edits_are_not_vetoed() {
        assert_eq!(
            veto(
                "PKK says withdrawing all forces from Turkey to northern Iraq",
                "Kurdish PKK says withdrawing all forces from Turkey to north Iraq"
            ),
            None
        );
        assert_eq!(veto("Apple unveils the new iPhone", "Apple unveils new iPhone"), None);
        assert_eq!(veto("Fed's Plosser sees high bar", "Feds Plosser sees a high bar"), None);
    }

    /// A headline's normalised text and names, in a feed that has seen
    /// nothing yet.
    fn words(text: &str) -> (Normalized, Vec<bool>) {
        let norm = normalize(text, None);
        let names = crate::core::embed::CaseStats::default().names(&norm);
        (norm, names)
    }

    /// The look-alike test of two headlines, checked against the cheap
    /// test that must hold whenever it does.
    fn alike(a: &str, b: &str) -> Option<(String, String)> {
        let ((ta, na), (tb, nb)) = (words(a), words(b));
        let (wa, wb) = (Words::new(&ta, na), Words::new(&tb, nb));
        let found = look_alike(&wa, &wb).map(|(x, y)| (x.to_owned(), y.to_owned()));
        if found.is_some() {
            assert!(wa.may_look_alike(&tb), "the cheap test passes {a} / {b}");
        }
        found
    }

    #[test]
    fn one_template_with_other_names_or_numbers_is_a_look_alike() {
        let pairs = [
            ("Trump wins Iowa caucuses", "Trump wins Ohio primary", ("iowa", "ohio")),
            (
                "Magnitude 6.1 earthquake strikes off coast of Japan",
                "Magnitude 6.1 earthquake strikes off coast of Chile",
                ("japan", "chile"),
            ),
            ("Tesla shares jump 8% after earnings beat", "Ford shares jump 8% after earnings beat", ("tesla", "ford")),
            (
                "Toyota quarterly profit falls 30% as U.S. tariffs bite",
                "Honda quarterly profit falls 30% as U.S. tariffs bite",
                ("toyota", "honda"),
            ),
            (
                "Bank of England holds interest rates at 5.25%",
                "Bank of Canada holds interest rates at 5%",
                ("england", "canada"),
            ),
            (
                "Manchester United beat Liverpool 2-1 at Old Trafford",
                "Manchester City beat Arsenal 2-1 at the Etihad",
                ("united", "city"),
            ),
            (
                "Microsoft to acquire Activision Blizzard for $69 billion",
                "Sony to acquire Bungie for $3.6 billion",
                ("microsoft", "sony"),
            ),
            ("Dow rises 300 points as inflation cools", "Nikkei rises 300 points as yen weakens", ("dow", "nikkei")),
        ];
        for (a, b, (x, y)) in pairs {
            assert_eq!(alike(a, b), Some((x.to_owned(), y.to_owned())), "{a} / {b}");
        }
    }

    #[test]
    fn rewrites_copies_and_title_case_are_not_look_alikes() {
        for (a, b) in [
            ("Trump wins Ohio primary", "Trump cruises to victory in Ohio primary"),
            (
                "Typhoon Nari makes landfall in southern Japan",
                "Typhoon Nari makes landfall in southern Japan - ABC News",
            ),
            (
                "Japan's ruling coalition set to lose upper house majority",
                "Japan's ruling bloc loses control of upper house",
            ),
            ("Fed raises rates", "Federal Reserve raises rates"),
            // Title Case says nothing about names: only numbers count there.
            ("Google Offers Apps Referral Program", "Google Launches Apps Referral Program"),
            ("Strong quake shakes northern Japan", "Magnitude 6.1 earthquake strikes off Japan's Hokkaido"),
            // A rewording with more or fewer words is not a template.
            ("Trump cruises to victory in Iowa, DeSantis a distant second", "Trump cruises to victory in Ohio primary"),
            (
                "Japan's whaling not for scientific research, rules International Court of Justice",
                "Japan's whaling not for scientific research, rules ICJ",
            ),
            ("Keith Richards to release children's book in September", "Keith Richards set to release children's book"),
            (
                "GM to recall 1.5 mln vehicles to fix power steering",
                "General Motors to recall 1.5 mln vehicles to fix power steering",
            ),
            // A story's numbers change as it goes on.
            ("Death toll from Typhoon Nari rises to five", "Death toll from Typhoon Nari rises to 7"),
        ] {
            assert_eq!(alike(a, b), None, "{a} / {b}");
        }
    }

    #[test]
    fn similarity_treats_truncation_as_a_copy() {
        let full = normalize("Fed official says weak data caused by weather, should not slow taper", None);
        let cut = normalize("Fed official says weak data caused by...", None);
        assert_eq!(string_similarity(&full.text, &cut.text), 1.0);
        assert!(string_similarity("fed raises rates", "cat up tree") < 0.5);
    }
}
