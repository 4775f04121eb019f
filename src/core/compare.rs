//! Text comparisons behind the near-duplicate tier: string similarity of
//! normalised texts, and the veto that keeps templated headlines apart
//! ("Trump wins Ohio" is not "Trump wins Iowa").

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
            (None, Some(y)) => {
                added.push(*y);
                j += 1;
            }
            (Some(_), Some(y)) if at(&lcs, i, j + 1) >= at(&lcs, i + 1, j) => {
                added.push(*y);
                j += 1;
            }
            (Some(x), _) => {
                removed.push(*x);
                i += 1;
            }
        }
    }
    if !removed.is_empty() || !added.is_empty() {
        runs.push((removed, added));
    }
    runs.retain(|(r, a)| !r.is_empty() && !a.is_empty());
    runs
}

/// Two forms of one word: a shared stem of at least four letters
/// (`northern`/`north`), a word and its extension (`fed`/`feds`), or a
/// one-letter typo.
fn is_variant(a: &str, b: &str) -> bool {
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let shorter = a.chars().count().min(b.chars().count());
    common >= 4 || (common >= 3 && common == shorter) || (shorter >= 4 && strsim::levenshtein(a, b) <= 1)
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

    #[test]
    fn similarity_treats_truncation_as_a_copy() {
        let full = normalize("Fed official says weak data caused by weather, should not slow taper", None);
        let cut = normalize("Fed official says weak data caused by...", None);
        assert_eq!(string_similarity(&full.text, &cut.text), 1.0);
        assert!(string_similarity("fed raises rates", "cat up tree") < 0.5);
    }
}
