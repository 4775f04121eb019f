//! Headline normalisation: the text that matching sees, and the exact key.
//!
//! The original text is never changed; this module derives a normalised form
//! from it. The steps, in order: HTML entities, Unicode NFKC, removal of
//! control, zero-width and bidi characters, unified quotes and dashes, the
//! publisher suffix (` - Outlet`, ` | Outlet`, ` – Outlet`, or the given
//! source), boilerplate prefixes (`Exclusive:`, `WATCH:`, `UPDATE 2-`), a
//! trailing truncation mark, case folding, possessives (`Iraq's` = `Iraqs`),
//! and finally tokenisation into runs of letters and digits joined by single
//! spaces.

use unicode_normalization::UnicodeNormalization;

/// A headline's normalised form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// Lower-case tokens joined by single spaces.
    pub text: String,
    /// Bit `i` is set when token `i` began with a capital letter in the
    /// headline (tokens past the 64th never).
    pub capitals: u64,
}

impl Normalized {
    /// A stable 64-bit hash of `text`, computed when asked (not kept beside
    /// every stored headline): equal keys mean an exact duplicate.
    pub fn key(&self) -> u64 {
        stable_hash(self.text.as_bytes())
    }

    /// The tokens of the normalised text.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.text.split(' ').filter(|t| !t.is_empty())
    }

    /// The tokens, each with whether it began with a capital letter.
    pub fn cased_tokens(&self) -> impl Iterator<Item = (&str, bool)> {
        self.tokens().enumerate().map(|(i, token)| (token, i < 64 && self.capitals >> i & 1 == 1))
    }
}

/// Normalises `text`, using `source` (the publisher, if known) to recognise a
/// publisher suffix.
pub fn normalize(text: &str, source: Option<&str>) -> Normalized {
    let cleaned = clean(text);
    let body = strip_prefixes(strip_suffix(&cleaned, source));
    let body = strip_truncation(body);
    let (text, capitals) = tokenize(body);
    Normalized { text, capitals }
}

/// Entities, NFKC, invisible characters, quotes and dashes; whitespace runs
/// become single spaces. Case is kept: suffix detection looks at it.
fn clean(text: &str) -> String {
    let decoded = decode_entities(text);
    let mut out = String::with_capacity(decoded.len());
    let mut last_space = true;
    for c in decoded.nfkc() {
        let c = match c {
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '`' | '\u{00B4}' => '\'',
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' | '\u{00AB}' | '\u{00BB}' => '"',
            '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}' => '-',
            c if is_invisible(c) => continue,
            c if c.is_whitespace() => ' ',
            c => c,
        };
        if c == ' ' {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Control, zero-width, bidi and other format characters: dropped for
/// matching (the stored original keeps them).
fn is_invisible(c: char) -> bool {
    (c.is_control() && !c.is_whitespace())
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

/// Decodes the HTML entities that leak into feeds: the common named ones and
/// numeric ones. Anything else is left as it is.
fn decode_entities(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('&') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        match tail[1..].find(';').filter(|&end| end <= 10) {
            Some(end) => {
                let entity = &tail[1..=end];
                match decode_entity(entity) {
                    Some(c) => {
                        out.push(c);
                        rest = &tail[end + 2..];
                    }
                    None => {
                        out.push('&');
                        rest = &tail[1..];
                    }
                }
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

fn decode_entity(entity: &str) -> Option<char> {
    if let Some(num) = entity.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code);
    }
    Some(match entity {
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        "lt" => '<',
        "gt" => '>',
        "nbsp" => ' ',
        "ndash" => '-',
        "mdash" => '-',
        "lsquo" | "rsquo" => '\'',
        "ldquo" | "rdquo" => '"',
        "hellip" => '\u{2026}',
        _ => return None,
    })
}

/// Separators that introduce a publisher tail.
const SUFFIX_SEPARATORS: [&str; 3] = [" - ", " | ", " :: "];

/// Removes a trailing publisher name: the given source after a separator,
/// or a short title-case tail after ` - ` (an outlet name), or any short
/// tail after ` | `. The head must keep at least three words.
fn strip_suffix<'a>(text: &'a str, source: Option<&str>) -> &'a str {
    let Some((sep, pos)) =
        SUFFIX_SEPARATORS.iter().filter_map(|sep| text.rfind(sep).map(|pos| (*sep, pos))).max_by_key(|&(_, pos)| pos)
    else {
        return text;
    };
    let head = text[..pos].trim_end();
    let tail = text[pos + sep.len()..].trim();
    if head.split(' ').count() < 3 || tail.is_empty() {
        return text;
    }
    let tail_words: Vec<&str> = tail.split(' ').collect();
    let is_source = source.is_some_and(|s| same_name(s, tail));
    // Without a source to compare with, a ` - ` tail counts as an outlet
    // only if it looks like a name: a few capitalised words and no list
    // ("Met Gala - Kim Kardashian, Rihanna & More" keeps its tail).
    let is_outlet = tail_words.len() <= 5
        && (sep != " - "
            || (!tail.contains(',') && !tail.ends_with("...") && tail_words.iter().all(|w| looks_like_name_word(w)))
            || tail_words.iter().any(|w| is_domain(w)));
    if is_source || is_outlet { head } else { text }
}

/// Whether two publisher names are the same, ignoring case, punctuation and
/// a leading "the".
fn same_name(a: &str, b: &str) -> bool {
    let squash = |s: &str| -> String {
        let lower: String = s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect();
        lower.strip_prefix("the").map(str::to_owned).unwrap_or(lower)
    };
    let (a, b) = (squash(a), squash(b));
    !a.is_empty() && !b.is_empty() && (a == b || a.starts_with(&b) || b.starts_with(&a))
}

/// A word that may be part of an outlet name: capitalised, a number or a
/// short connector.
fn looks_like_name_word(word: &str) -> bool {
    const CONNECTORS: [&str; 8] = ["of", "the", "and", "&", "for", "on", "de", "la"];
    let first = word.chars().next();
    first.is_some_and(|c| c.is_uppercase() || c.is_ascii_digit()) || CONNECTORS.contains(&word)
}

fn is_domain(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    [".com", ".co.uk", ".org", ".net", ".in", ".ca", ".au"].iter().any(|tld| lower.ends_with(tld))
}

/// Boilerplate labels that precede the real headline.
const PREFIXES: [&str; 18] = [
    "exclusive",
    "breaking",
    "breaking news",
    "watch",
    "video",
    "photos",
    "photo",
    "update",
    "updated",
    "live",
    "news",
    "just in",
    "developing",
    "urgent",
    "report",
    "analysis",
    "opinion",
    "recap",
];

/// Removes boilerplate prefixes such as `Exclusive:`, `WATCH -`, `UPDATE 2-`
/// (repeatedly: `UPDATE 1-EXCLUSIVE-...`). The rest must keep two words.
fn strip_prefixes(mut text: &str) -> &str {
    loop {
        let Some(rest) = strip_one_prefix(text) else {
            return text;
        };
        if rest.split(' ').count() < 2 {
            return text;
        }
        text = rest;
    }
}

fn strip_one_prefix(text: &str) -> Option<&str> {
    let end = text.find([':', '-'])?;
    let label = text[..end].trim();
    let label = label.trim_end_matches(|c: char| c.is_ascii_digit() || c == ' ');
    if !PREFIXES.iter().any(|p| p.eq_ignore_ascii_case(label)) {
        return None;
    }
    Some(text[end + 1..].trim_start())
}

/// Removes a trailing truncation mark (`...`).
fn strip_truncation(text: &str) -> &str {
    text.trim_end_matches(['.', ' ']).trim_end()
}

/// Lower-case tokens: runs of letters and digits. An apostrophe inside a
/// word is dropped (`Iraq's` = `Iraqs`, `don't` = `dont`); `.` and `,`
/// between digits are kept as `.` and dropped respectively (`5,000` =
/// `5000`, `0.25` stays).
fn tokenize(text: &str) -> (String, u64) {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let (mut capitals, mut tokens) = (0u64, 0u32);
    let mut in_token = false;
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let next = chars.get(i + 1).copied();
        let between_alnum = prev.is_some_and(char::is_alphanumeric) && next.is_some_and(char::is_alphanumeric);
        let between_digits = prev.is_some_and(|p| p.is_ascii_digit()) && next.is_some_and(|n| n.is_ascii_digit());
        if c.is_alphanumeric() {
            if !in_token {
                if !out.is_empty() {
                    out.push(' ');
                }
                if c.is_uppercase() && tokens < 64 {
                    capitals |= 1 << tokens;
                }
                tokens = tokens.saturating_add(1);
            }
            // A letter whose lower case adds a combining mark ("İ" is "i"
            // and a dot above) keeps only its letters: the mark would end
            // the word when the text is normalised again.
            out.extend(c.to_lowercase().filter(|lower| lower.is_alphanumeric()));
            in_token = true;
        } else if c == '\'' && between_alnum {
            // Joined: the word continues after the apostrophe.
        } else if c == ',' && between_digits {
            // Thousands separator.
        } else if c == '.' && between_digits {
            out.push('.');
        } else {
            in_token = false;
        }
    }
    (out, capitals)
}

/// FNV-1a, 64 bits: stable across runs, platforms and versions.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn norm(text: &str) -> String {
        normalize(text, None).text
    }

    #[test]
    fn publisher_suffixes_are_stripped() {
        assert_eq!(
            norm("Kurdish rebel group PKK says it is withdrawing its fighters from Turkey to Iraq - ABC News"),
            "kurdish rebel group pkk says it is withdrawing its fighters from turkey to iraq"
        );
        assert_eq!(
            norm("Zebra Technologies to Acquire Motorola's Enterprise Business - Analyst Blog"),
            "zebra technologies to acquire motorolas enterprise business"
        );
        assert_eq!(norm("Police: Woman shot by officer had knife | KCTV5"), "police woman shot by officer had knife");
        assert_eq!(
            normalize("Herbalife reports earnings - WNCN: News, Weather for  ...", Some("WNCN")).text,
            "herbalife reports earnings"
        );
    }

    #[test]
    fn a_tail_that_lists_names_is_part_of_the_headline() {
        assert_ne!(
            norm("Met Gala 2014 Red Carpet - Kendall Jenner..."),
            norm("Met Gala 2014 Red Carpet - Kim Kardashian, Rihanna & More")
        );
    }

    #[test]
    fn a_lower_case_tail_is_part_of_the_headline() {
        assert_eq!(
            norm("Coffee may protect against liver disease - study"),
            "coffee may protect against liver disease study"
        );
    }

    #[test]
    fn the_source_field_identifies_its_own_suffix() {
        let n = normalize("Stocks rise as Fed holds rates - bangkok post", Some("Bangkok Post"));
        assert_eq!(n.text, "stocks rise as fed holds rates");
    }

    #[test]
    fn a_short_headline_keeps_its_tail() {
        assert_eq!(norm("Obama - Putin"), "obama putin");
    }

    #[test]
    fn boilerplate_prefixes_are_stripped() {
        assert_eq!(norm("WATCH: Jimmy Fallon hosts the Tonight Show"), "jimmy fallon hosts the tonight show");
        assert_eq!(
            norm("UPDATE 2-Ukraine says Russian troops massing on border"),
            "ukraine says russian troops massing on border"
        );
        assert_eq!(norm("Exclusive: VIDEO - Apple to unveil iWatch"), "apple to unveil iwatch");
        assert_eq!(norm("Report: Ford names CEO"), "ford names ceo");
    }

    #[test]
    fn a_capital_whose_lower_case_adds_a_mark_normalises_once_and_for_all() {
        assert_eq!(norm("İstanbul votes"), "istanbul votes");
        assert_eq!(norm(&norm("İstanbul votes")), norm("İstanbul votes"));
    }

    #[test]
    fn possessives_and_dropped_apostrophes_agree() {
        assert_eq!(norm("Iraq's PM wins"), norm("Iraqs PM wins"));
        assert_eq!(norm("World\u{2019}s largest temple"), norm("Worlds largest temple"));
    }

    #[test]
    fn quotes_dashes_entities_and_invisibles_are_unified() {
        assert_eq!(
            norm("\u{201C}Noah\u{201D} tops box office &amp; sets record"),
            norm("\"Noah\" tops box office & sets record")
        );
        assert_eq!(norm("Fed\u{200B} chief\u{202E} speaks"), "fed chief speaks");
        assert_eq!(norm("Ｆｅｄ  chief\tspeaks"), "fed chief speaks");
        assert_eq!(norm("It&#39;s over &#x2014; again"), "its over again");
    }

    #[test]
    fn numbers_keep_their_value() {
        assert_eq!(norm("5,000-year-old temple unearthed"), "5000 year old temple unearthed");
        assert_eq!(norm("Fed raises rates 0.25%"), "fed raises rates 0.25");
    }

    #[test]
    fn truncation_marks_are_removed() {
        assert_eq!(
            norm("Fed official says weak data caused by weather, should not..."),
            "fed official says weak data caused by weather should not"
        );
        assert_eq!(norm("Fed official says weak data\u{2026}"), "fed official says weak data");
    }

    #[test]
    fn homoglyphs_are_not_folded() {
        // The first "o" of "Ohio" is Cyrillic.
        assert_ne!(norm("Trump wins \u{041E}hio"), norm("Trump wins Ohio"));
    }

    #[test]
    fn keys_follow_text() {
        let a = normalize("Fed raises rates - Reuters", None);
        let b = normalize("FED RAISES RATES", None);
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), normalize("Fed lowers rates", None).key());
    }

    #[test]
    fn garbage_input_does_not_panic() {
        for text in ["", " ", "&", "&#xFFFFFFFF;", "&#;", " - ", "a | ", "::", "...", "'", "\u{0}"] {
            let _ = normalize(text, Some(""));
        }
    }
}
