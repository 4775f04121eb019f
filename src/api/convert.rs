//! Conversions between the generated protobuf types and the core's types,
//! and the validation that happens on the way in.

use crate::pb::wkt::Timestamp;

use crate::app::{AppError, NamespaceInfo, setting_key};
use crate::core::settings::Settings;
use crate::core::types::{
    Assignment, Candidate, ChangeKind, Headline, ItemError, ItemErrorKind, MatchKind, Millis, RawHeadline, Removal,
    Stats, StoredHeadline, StoryChange, StoryView,
};
use crate::pb;

/// The earliest and latest times a `google.protobuf.Timestamp` may hold
/// (0001-01-01 and 9999-12-31, in seconds).
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

/// A protobuf timestamp as milliseconds, if it is valid.
pub fn millis(ts: &Timestamp) -> Result<Millis, &'static str> {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) {
        return Err("seconds must be within years 0001 to 9999");
    }
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err("nanos must be in [0, 999999999]");
    }
    Ok(ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000)
}

/// Milliseconds as a protobuf timestamp.
pub fn timestamp(ms: Millis) -> Timestamp {
    Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

/// The current time in milliseconds.
pub fn now_millis() -> Millis {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.as_millis().try_into().unwrap_or(Millis::MAX)
}

/// Parses one request headline. `require_id` is false for dry runs.
pub fn headline(h: &pb::Headline, now: Millis, require_id: bool) -> Result<Headline, ItemError> {
    let published = match &h.published_time {
        Some(ts) => Some(millis(ts).map_err(|reason| ItemError::invalid("published_time", reason))?),
        None => None,
    };
    let raw = RawHeadline { id: &h.id, text: &h.text, source: &h.source, url: &h.url, published };
    Headline::parse(&raw, now, require_id)
}

/// Parses the headlines of a batch; each error names its item's field.
pub fn headlines(items: &[pb::Headline], now: Millis) -> Vec<Result<Headline, ItemError>> {
    items.iter().map(|h| headline(h, now, true)).collect()
}

/// Checks a batch's size.
pub fn check_batch(len: usize, max: usize) -> Result<(), AppError> {
    if len == 0 {
        return Err(AppError::invalid("headlines", "at least one headline is required"));
    }
    if len > max {
        return Err(AppError::invalid("headlines", format!("{len} headlines; at most {max} per request")));
    }
    Ok(())
}

/// A score for display: six decimals, so that `0.3f32` reads as `0.3`
/// rather than `0.30000001192092896`.
pub fn score(x: f32) -> f64 {
    (f64::from(x) * 1e6).round() / 1e6
}

/// The core match kind of a protobuf one (`None` for
/// `MATCH_KIND_UNSPECIFIED` or an unknown number).
pub fn kind_from_pb(kind: i32) -> Option<MatchKind> {
    MatchKind::ALL.into_iter().find(|k| self::kind(*k) as i32 == kind)
}

/// The protobuf match kind.
pub fn kind(kind: MatchKind) -> pb::MatchKind {
    match kind {
        MatchKind::NewStory => pb::MatchKind::NewStory,
        MatchKind::ExactDuplicate => pb::MatchKind::ExactDuplicate,
        MatchKind::NearDuplicate => pb::MatchKind::NearDuplicate,
        MatchKind::SameStory => pb::MatchKind::SameStory,
    }
}

/// A per-item error; `index` is the item's position in the request.
pub fn item_error(index: usize, error: &ItemError) -> pb::ItemError {
    let code = match error.kind {
        ItemErrorKind::InvalidArgument => pb::ItemErrorCode::InvalidArgument,
        ItemErrorKind::AlreadyExists => pb::ItemErrorCode::AlreadyExists,
        ItemErrorKind::Internal => pb::ItemErrorCode::Internal,
    };
    pb::ItemError {
        code: code.into(),
        field: format!("headlines[{index}].{}", error.field),
        reason: error.reason.clone(),
    }
}

/// The answer for one request item.
pub fn assignment(index: usize, headline_id: &str, result: &Result<Assignment, ItemError>) -> pb::Assignment {
    match result {
        Ok(a) => pb::Assignment {
            headline_id: a.headline_id.clone(),
            story_id: a.story_id.to_string(),
            kind: kind(a.kind).into(),
            matched_headline_id: a.matched_headline_id.clone().unwrap_or_default(),
            similarity: score(a.similarity),
            canonical_headline_id: a.canonical_headline_id.clone(),
            canonical_text: a.canonical_text.clone(),
            story_size: u32::try_from(a.story_size).unwrap_or(u32::MAX),
            error: None,
            evidence: Some(pb::Evidence {
                vector_similarity: score(a.evidence.vector_similarity),
                string_similarity: score(a.evidence.string_similarity),
                story_similarity: score(a.evidence.story_similarity),
                threshold: score(a.evidence.threshold),
                normalized_text: a.evidence.normalized_text.clone(),
                note: a.evidence.note.clone(),
            }),
            replayed: a.replayed,
        },
        Err(e) => pb::Assignment {
            headline_id: headline_id.to_owned(),
            error: Some(item_error(index, e)),
            ..Default::default()
        },
    }
}

/// The answers for a batch, in request order.
pub fn assignments(items: &[pb::Headline], results: &[Result<Assignment, ItemError>]) -> Vec<pb::Assignment> {
    items.iter().zip(results).enumerate().map(|(i, (h, r))| assignment(i, &h.id, r)).collect()
}

/// A stored headline as the protobuf headline.
pub fn stored_headline(h: &Headline) -> pb::Headline {
    pb::Headline {
        id: h.id.clone(),
        text: h.text.clone(),
        source: h.source.clone().unwrap_or_default(),
        url: h.url.clone().unwrap_or_default(),
        published_time: Some(timestamp(h.published)),
    }
}

/// A story member.
pub fn member(m: &StoredHeadline) -> pb::StoryMember {
    pb::StoryMember {
        headline: Some(stored_headline(&m.headline)),
        kind: kind(m.kind).into(),
        matched_headline_id: m.matched_headline_id.clone().unwrap_or_default(),
        similarity: score(m.similarity),
    }
}

/// A story.
pub fn story(s: &StoryView) -> pb::Story {
    pb::Story {
        story_id: s.id.to_string(),
        canonical_headline_id: s.canonical_headline_id.clone(),
        canonical_text: s.canonical_text.clone(),
        size: u32::try_from(s.size).unwrap_or(u32::MAX),
        members: s.members.iter().map(member).collect(),
        sources: s
            .sources
            .iter()
            .map(|(source, count)| pb::SourceCount {
                source: source.clone(),
                count: u32::try_from(*count).unwrap_or(u32::MAX),
            })
            .collect(),
        first_seen: Some(timestamp(s.first_seen)),
        last_seen: Some(timestamp(s.last_seen)),
        merged_story_ids: s.merged.iter().map(ToString::to_string).collect(),
    }
}

/// A match candidate.
pub fn candidate(c: &Candidate) -> pb::Candidate {
    pb::Candidate {
        headline_id: c.headline_id.clone(),
        text: c.text.clone(),
        story_id: c.story_id.to_string(),
        vector_similarity: score(c.vector_similarity),
        string_similarity: score(c.string_similarity),
        story_similarity: score(c.story_similarity),
    }
}

/// An entry of the story change feed.
pub fn story_change(c: &StoryChange) -> pb::StoryChange {
    let kind = match c.kind {
        ChangeKind::Created => pb::StoryChangeKind::Created,
        ChangeKind::Updated => pb::StoryChangeKind::Updated,
        ChangeKind::Merged => pb::StoryChangeKind::Merged,
        ChangeKind::Deleted => pb::StoryChangeKind::Deleted,
    };
    let reason = match c.removal {
        None => pb::DeletionReason::Unspecified,
        Some(Removal::Takedown) => pb::DeletionReason::Takedown,
        Some(Removal::Retention) => pb::DeletionReason::Retention,
    };
    let live = matches!(c.kind, ChangeKind::Created | ChangeKind::Updated);
    pb::StoryChange {
        sequence: c.seq,
        kind: kind.into(),
        story_id: c.story.to_string(),
        merged_into_story_id: c.merged_into.map(|id| id.to_string()).unwrap_or_default(),
        deletion_reason: reason.into(),
        size: u32::try_from(c.size).unwrap_or(u32::MAX),
        canonical_headline_id: c.canonical_headline_id.clone(),
        canonical_text: c.canonical_text.clone(),
        first_seen: live.then(|| timestamp(c.first_seen)),
        last_seen: live.then(|| timestamp(c.last_seen)),
    }
}

/// The settings a request sets, as `key=value` in the order of the
/// fields.
pub fn setting_changes(s: &pb::NamespaceSettings) -> Vec<String> {
    let mut specs = Vec::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            specs.push(format!("{key}={value}"));
        }
    };
    put("embedder", s.embedder.clone());
    put("semantic_weight", s.semantic_weight.map(|v| v.to_string()));
    put("lexical_dim", s.lexical_dim.map(|v| v.to_string()));
    put("idf_power", s.idf_power.map(|v| v.to_string()));
    put("near_vector_threshold", s.near_vector_threshold.map(|v| v.to_string()));
    put("near_string_threshold", s.near_string_threshold.map(|v| v.to_string()));
    put("background_weight", s.background_weight.map(|v| v.to_string()));
    put("background_prior", s.background_prior.map(|v| v.to_string()));
    put("story_threshold", s.story_threshold.map(|v| v.to_string()));
    put("merge_threshold", s.merge_threshold.map(|v| v.to_string()));
    put("merge_crowding", s.merge_crowding.map(|v| v.to_string()));
    put("story_window_hours", s.story_window_hours.map(|v| v.to_string()));
    put("copy_window_hours", s.copy_window_hours.map(|v| v.to_string()));
    put("follow_share", s.follow_share.map(|v| v.to_string()));
    put("candidates", s.candidates.map(|v| v.to_string()));
    put("retention_hours", s.retention_hours.map(|v| v.to_string()));
    put("change_feed_length", s.change_feed_length.map(|v| v.to_string()));
    specs
}

/// Every setting of a namespace.
pub fn namespace_settings(s: &Settings) -> pb::NamespaceSettings {
    let hours = |ms: i64| ms as f64 / 3_600_000.0;
    pb::NamespaceSettings {
        embedder: Some(s.embedder.name().to_owned()),
        semantic_weight: Some(s.semantic_weight),
        lexical_dim: Some(u32::try_from(s.lexical_dim).unwrap_or(u32::MAX)),
        idf_power: Some(s.idf_power),
        near_vector_threshold: Some(s.near_vector_threshold),
        near_string_threshold: Some(s.near_string_threshold),
        background_weight: Some(s.background_weight),
        background_prior: Some(s.background_prior),
        story_threshold: Some(s.story_threshold),
        merge_threshold: Some(s.merge_threshold),
        merge_crowding: Some(s.merge_crowding),
        story_window_hours: Some(hours(s.story_window)),
        copy_window_hours: Some(hours(s.copy_window)),
        follow_share: Some(s.follow_share),
        candidates: Some(u32::try_from(s.candidates).unwrap_or(u32::MAX)),
        retention_hours: Some(s.retention.map_or(0.0, hours)),
        change_feed_length: Some(s.change_feed_length),
    }
}

/// A namespace's counters.
pub fn namespace_stats(namespace: String, s: Stats) -> pb::NamespaceStats {
    pb::NamespaceStats {
        namespace,
        headlines: s.headlines,
        stories: s.stories,
        indexed_vectors: s.indexed_vectors,
        new_stories: s.new_stories,
        exact_duplicates: s.exact_duplicates,
        near_duplicates: s.near_duplicates,
        same_story: s.same_story,
        merges: s.merges,
        embedder: s.embedder,
    }
}

/// A namespace as the admin calls answer it.
pub fn namespace(info: NamespaceInfo) -> pb::Namespace {
    pb::Namespace {
        settings: Some(namespace_settings(&info.settings)),
        own_settings: info.own.iter().map(|spec| setting_key(spec).to_owned()).collect(),
        stats: Some(namespace_stats(info.name.clone(), info.stats)),
        name: info.name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_bad_ones_are_rejected() {
        for ms in [0, 1, -1, 1_394_470_370_698, -62_135_596_800_000] {
            assert_eq!(millis(&timestamp(ms)), Ok(ms));
        }
        assert!(millis(&Timestamp { seconds: 0, nanos: -1 }).is_err());
        assert!(millis(&Timestamp { seconds: MAX_SECONDS + 1, nanos: 0 }).is_err());
    }

    #[test]
    fn item_errors_name_the_field_path() {
        let bad = pb::Headline { id: "x".into(), text: "  ".into(), ..Default::default() };
        let parsed = headlines(&[bad], 0);
        let error = parsed[0].as_ref().expect_err("blank text");
        assert_eq!(item_error(3, error).field, "headlines[3].text");
    }
}
