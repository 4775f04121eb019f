//! The core's vocabulary: headlines as parsed at the edge, assignments,
//! stories and per-item errors. Nothing here knows about gRPC.

use std::fmt;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// One day in milliseconds.
pub const DAY_MS: Millis = 24 * 60 * 60 * 1000;

/// How a headline relates to what is already known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchKind {
    /// Nothing close enough: the first headline of a story.
    NewStory,
    /// Equal to a known headline after normalisation.
    ExactDuplicate,
    /// A lightly edited copy of a known headline.
    NearDuplicate,
    /// A different headline about a known story.
    SameStory,
}

impl MatchKind {
    /// Every kind.
    pub const ALL: [MatchKind; 4] = [Self::NewStory, Self::ExactDuplicate, Self::NearDuplicate, Self::SameStory];

    /// The kind's name in files, metrics and JSON: `new_story`,
    /// `exact_duplicate`, `near_duplicate`, `same_story`.
    pub fn name(self) -> &'static str {
        match self {
            Self::NewStory => "new_story",
            Self::ExactDuplicate => "exact_duplicate",
            Self::NearDuplicate => "near_duplicate",
            Self::SameStory => "same_story",
        }
    }

    /// The kind's code in stored records (never changes).
    pub fn code(self) -> u32 {
        match self {
            Self::NewStory => 1,
            Self::ExactDuplicate => 2,
            Self::NearDuplicate => 3,
            Self::SameStory => 4,
        }
    }

    /// The kind of a stored code.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.code() == code)
    }
}

/// A story id: stable for the story's life, unique within a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoryId(pub u64);

impl fmt::Display for StoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

impl std::str::FromStr for StoryId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let digits = s.strip_prefix('s').ok_or(())?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        digits.parse().map(StoryId).map_err(|_| ())
    }
}

/// Limits applied when a headline is parsed.
pub const MAX_ID_BYTES: usize = 256;
/// The longest accepted headline text, in characters after trimming.
pub const MAX_TEXT_CHARS: usize = 1000;
/// The longest accepted source or URL, in bytes.
pub const MAX_FIELD_BYTES: usize = 2048;
/// How far in the future of the arrival time a publication time may be.
pub const MAX_FUTURE: Millis = DAY_MS;

/// A headline that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headline {
    /// The client's id, the idempotency key.
    pub id: String,
    /// The text as published (trimmed).
    pub text: String,
    /// The publisher, if given.
    pub source: Option<String>,
    /// The article URL, if given.
    pub url: Option<String>,
    /// Event time: the publication time, or the arrival time.
    pub published: Millis,
}

/// A headline as it arrives, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawHeadline<'a> {
    /// The client's id.
    pub id: &'a str,
    /// The text.
    pub text: &'a str,
    /// The publisher ("" if absent).
    pub source: &'a str,
    /// The URL ("" if absent).
    pub url: &'a str,
    /// The publication time, if given.
    pub published: Option<Millis>,
}

impl Headline {
    /// Validates a raw headline; `now` is the arrival time used when no
    /// publication time is given. `require_id` is false for dry runs.
    pub fn parse(raw: &RawHeadline<'_>, now: Millis, require_id: bool) -> Result<Self, ItemError> {
        let id = raw.id.trim();
        if id.is_empty() && require_id {
            return Err(ItemError::invalid("id", "id is required"));
        }
        if id.len() > MAX_ID_BYTES {
            return Err(ItemError::invalid("id", format!("id is longer than {MAX_ID_BYTES} bytes")));
        }
        if id.chars().any(char::is_control) {
            return Err(ItemError::invalid("id", "id contains control characters"));
        }
        let text = raw.text.trim();
        if text.is_empty() {
            return Err(ItemError::invalid("text", "text is required and must not be blank"));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(ItemError::invalid("text", format!("text is longer than {MAX_TEXT_CHARS} characters")));
        }
        let optional = |value: &str, field: &'static str| -> Result<Option<String>, ItemError> {
            let value = value.trim();
            if value.len() > MAX_FIELD_BYTES {
                return Err(ItemError::invalid(field, format!("{field} is longer than {MAX_FIELD_BYTES} bytes")));
            }
            Ok((!value.is_empty()).then(|| value.to_owned()))
        };
        if raw.published.is_some_and(|p| p > now.saturating_add(MAX_FUTURE)) {
            return Err(ItemError::invalid("published_time", "more than 24 hours in the future"));
        }
        Ok(Self {
            id: id.to_owned(),
            text: text.to_owned(),
            source: optional(raw.source, "source")?,
            url: optional(raw.url, "url")?,
            published: raw.published.unwrap_or(now),
        })
    }
}

/// Why an item was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemErrorKind {
    /// A field is missing or malformed.
    InvalidArgument,
    /// The id is stored with a different text.
    AlreadyExists,
    /// The service failed to answer this item; retrying it is safe.
    Internal,
}

/// A per-item error: the field (relative to the item, e.g. `text`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// The class of error.
    pub kind: ItemErrorKind,
    /// The field, relative to the item.
    pub field: &'static str,
    /// A human-readable reason.
    pub reason: String,
}

impl ItemError {
    /// A malformed or missing field.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self { kind: ItemErrorKind::InvalidArgument, field, reason: reason.into() }
    }

    /// An id stored with a different text.
    pub fn conflict(id: &str) -> Self {
        Self {
            kind: ItemErrorKind::AlreadyExists,
            field: "id",
            reason: format!("headline {id:?} is already stored with a different text"),
        }
    }
}

impl ItemError {
    /// An item the engine could not answer (a fault of the service).
    pub fn internal(id: &str) -> Self {
        Self {
            kind: ItemErrorKind::Internal,
            field: "id",
            reason: format!("headline {id:?} could not be answered; retrying it is safe"),
        }
    }
}

/// The scores behind an assignment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    /// Cosine of the vectors of this and the matched headline.
    pub vector_similarity: f32,
    /// String similarity of the normalised texts.
    pub string_similarity: f32,
    /// Similarity to the joined story as a whole.
    pub story_similarity: f32,
    /// The threshold the deciding score cleared.
    pub threshold: f32,
    /// The normalised text.
    pub normalized_text: String,
    /// A short explanation.
    pub note: String,
}

/// The answer for one headline.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The headline id.
    pub headline_id: String,
    /// The story, after merges.
    pub story_id: StoryId,
    /// How the headline relates to the story.
    pub kind: MatchKind,
    /// The known headline that decided it, if any.
    pub matched_headline_id: Option<String>,
    /// The deciding similarity.
    pub similarity: f32,
    /// The story's canonical headline id.
    pub canonical_headline_id: String,
    /// The story's canonical headline text.
    pub canonical_text: String,
    /// The story's size.
    pub story_size: usize,
    /// The evidence.
    pub evidence: Evidence,
    /// True when this is a stored assignment returned again for a retry.
    pub replayed: bool,
}

/// A known headline that was considered for a match.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The known headline.
    pub headline_id: String,
    /// Its text.
    pub text: String,
    /// Its story (after merges).
    pub story_id: StoryId,
    /// Cosine of the vectors.
    pub vector_similarity: f32,
    /// String similarity of the normalised texts.
    pub string_similarity: f32,
    /// Similarity to the candidate's story as a whole.
    pub story_similarity: f32,
}

/// A stored headline with its assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredHeadline {
    /// The headline as ingested.
    pub headline: Headline,
    /// Its story now (after merges).
    pub story_id: StoryId,
    /// How it was assigned.
    pub kind: MatchKind,
    /// The headline that decided it.
    pub matched_headline_id: Option<String>,
    /// The deciding similarity.
    pub similarity: f32,
}

/// A story as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoryView {
    /// The id.
    pub id: StoryId,
    /// The canonical headline's id.
    pub canonical_headline_id: String,
    /// The canonical headline's text.
    pub canonical_text: String,
    /// The number of members.
    pub size: usize,
    /// The members in event-time order (empty in lists).
    pub members: Vec<StoredHeadline>,
    /// Sources, most frequent first.
    pub sources: Vec<(String, usize)>,
    /// Earliest member event time.
    pub first_seen: Millis,
    /// Latest member event time.
    pub last_seen: Millis,
    /// Stories merged into this one.
    pub merged: Vec<StoryId>,
}

/// What happened to a story in one commit, as its change feed tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The story appeared.
    Created,
    /// Its members changed (size, canonical headline, times).
    Updated,
    /// It was merged into another story.
    Merged,
    /// It lost its last member.
    Deleted,
}

impl ChangeKind {
    /// Every kind.
    pub const ALL: [ChangeKind; 4] = [Self::Created, Self::Updated, Self::Merged, Self::Deleted];

    /// The kind's code in the store (never changes).
    pub fn code(self) -> u32 {
        match self {
            Self::Created => 1,
            Self::Updated => 2,
            Self::Merged => 3,
            Self::Deleted => 4,
        }
    }

    /// The kind of a stored code.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.code() == code)
    }
}

/// Why a story's last member went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Its headlines were deleted by a client.
    Takedown,
    /// Its headlines fell behind the retention period.
    Retention,
}

impl Removal {
    /// The reason's code in the store (never changes).
    pub fn code(self) -> u32 {
        match self {
            Self::Takedown => 1,
            Self::Retention => 2,
        }
    }

    /// The reason of a stored code.
    pub fn from_code(code: u32) -> Option<Self> {
        [Self::Takedown, Self::Retention].into_iter().find(|reason| reason.code() == code)
    }
}

/// One entry of a namespace's story change feed: the net effect of one
/// commit on one story. A created or updated story carries its state after
/// the commit; a merged one names its survivor; a deleted one the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct StoryChange {
    /// The entry's number in the namespace's feed, from 1, without gaps.
    pub seq: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// The story.
    pub story: StoryId,
    /// The story it was merged into ([`ChangeKind::Merged`]).
    pub merged_into: Option<StoryId>,
    /// Why it went ([`ChangeKind::Deleted`]).
    pub removal: Option<Removal>,
    /// Its number of members (0 once merged or deleted).
    pub size: usize,
    /// Its canonical headline's id.
    pub canonical_headline_id: String,
    /// Its canonical headline's text.
    pub canonical_text: String,
    /// Its earliest member's event time.
    pub first_seen: Millis,
    /// Its latest member's event time.
    pub last_seen: Millis,
}

impl StoryChange {
    /// An entry that carries no story state (merged or deleted).
    pub fn gone(seq: u64, kind: ChangeKind, story: StoryId) -> Self {
        Self {
            seq,
            kind,
            story,
            merged_into: None,
            removal: None,
            size: 0,
            canonical_headline_id: String::new(),
            canonical_text: String::new(),
            first_seen: 0,
            last_seen: 0,
        }
    }
}

/// A page of a namespace's change feed, and the part of it still stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangePage {
    /// The entries after the requested sequence number, in order.
    pub changes: Vec<StoryChange>,
    /// The earliest entry still stored (the latest plus one when none is).
    pub earliest: u64,
    /// The latest entry written (0 before the first).
    pub latest: u64,
}

/// The order of a story listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoryOrder {
    /// Most recently updated first.
    Recency,
    /// Largest first.
    Size,
}

/// A story listing query.
#[derive(Debug, Clone)]
pub struct StoryQuery {
    /// Only stories last seen at or after this time.
    pub start: Option<Millis>,
    /// Only stories first seen before this time.
    pub end: Option<Millis>,
    /// Only stories with at least this many members.
    pub min_size: usize,
    /// The order.
    pub order: StoryOrder,
    /// The page size.
    pub limit: usize,
    /// Skip stories up to and including this position (from a page token).
    pub after: Option<StoryCursor>,
}

/// A position in a story listing: the sort key of the last story returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoryCursor {
    /// Size of the last story (size order only).
    pub size: u64,
    /// Last seen time of the last story.
    pub last_seen: Millis,
    /// Id of the last story.
    pub id: StoryId,
}

/// Counters of one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Stored headlines.
    pub headlines: u64,
    /// Live stories.
    pub stories: u64,
    /// Vectors in the nearest-neighbour index.
    pub indexed_vectors: u64,
    /// Stored headlines by kind.
    pub new_stories: u64,
    /// Stored exact duplicates.
    pub exact_duplicates: u64,
    /// Stored near duplicates.
    pub near_duplicates: u64,
    /// Stored same-story headlines.
    pub same_story: u64,
    /// Merges so far.
    pub merges: u64,
    /// The embedder's name.
    pub embedder: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn story_ids_round_trip_and_reject_garbage() {
        assert_eq!("s42".parse::<StoryId>(), Ok(StoryId(42)));
        assert_eq!(StoryId(7).to_string(), "s7");
        for bad in ["", "s", "42", "s-1", "s+1", "sx", "s99999999999999999999999"] {
            assert!(bad.parse::<StoryId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_rejects_bad_items_with_the_field_named() {
        let ok = RawHeadline { id: "1", text: "Fed raises rates", ..Default::default() };
        assert_eq!(Headline::parse(&ok, 5, true).map(|h| h.published), Ok(5));
        let blank = RawHeadline { text: " \t ", ..ok.clone() };
        assert_eq!(Headline::parse(&blank, 0, true).map_err(|e| e.field), Err("text"));
        let no_id = RawHeadline { id: "", ..ok.clone() };
        assert_eq!(Headline::parse(&no_id, 0, true).map_err(|e| e.field), Err("id"));
        assert!(Headline::parse(&no_id, 0, false).is_ok());
        let future = RawHeadline { published: Some(MAX_FUTURE + 1), ..ok.clone() };
        assert_eq!(Headline::parse(&future, 0, true).map_err(|e| e.field), Err("published_time"));
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        let too_long = RawHeadline { text: &long, ..ok.clone() };
        assert_eq!(Headline::parse(&too_long, 0, true).map_err(|e| e.field), Err("text"));
    }
}
