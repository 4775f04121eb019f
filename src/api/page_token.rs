//! ListStories page tokens: the sort key of the last story of a page, bound
//! to the query that produced it and protected by a checksum, so that a
//! token that was edited or belongs to another query is rejected.

use crate::app::AppError;
use crate::core::normalize::stable_hash;
use crate::core::types::{StoryCursor, StoryId, StoryOrder, StoryQuery};

/// A fingerprint of everything in a query except its position.
pub fn fingerprint(namespace: &str, query: &StoryQuery) -> u64 {
    let order = match query.order {
        StoryOrder::Recency => "recency",
        StoryOrder::Size => "size",
    };
    stable_hash(format!("{namespace}|{order}|{}|{:?}|{:?}", query.min_size, query.start, query.end).as_bytes())
}

fn checksum(payload: &str) -> u64 {
    stable_hash(format!("headline-dedup page token|{payload}").as_bytes())
}

/// The token of the page that follows `cursor`.
pub fn encode(cursor: &StoryCursor, fingerprint: u64) -> String {
    let payload = format!("{}.{}.{}.{fingerprint:016x}", cursor.size, cursor.last_seen, cursor.id.0);
    format!("{payload}.{:016x}", checksum(&payload))
}

/// Decodes a token of the same query.
pub fn decode(token: &str, fingerprint: u64) -> Result<StoryCursor, AppError> {
    let invalid = || AppError::invalid("page_token", "not a page token of this query");
    let (payload, sum) = token.rsplit_once('.').ok_or_else(invalid)?;
    if u64::from_str_radix(sum, 16).ok() != Some(checksum(payload)) {
        return Err(invalid());
    }
    let parts: Vec<&str> = payload.split('.').collect();
    let [size, last_seen, id, fp] = parts.as_slice() else { return Err(invalid()) };
    if u64::from_str_radix(fp, 16).ok() != Some(fingerprint) {
        return Err(invalid());
    }
    Ok(StoryCursor {
        size: size.parse().map_err(|_| invalid())?,
        last_seen: last_seen.parse().map_err(|_| invalid())?,
        id: StoryId(id.parse().map_err(|_| invalid())?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(min_size: usize) -> StoryQuery {
        StoryQuery { start: None, end: None, min_size, order: StoryOrder::Size, limit: 10, after: None }
    }

    #[test]
    fn tokens_round_trip_and_tampering_is_caught() {
        let cursor = StoryCursor { size: 7, last_seen: -5, id: StoryId(42) };
        let fp = fingerprint("default", &query(1));
        let token = encode(&cursor, fp);
        assert_eq!(decode(&token, fp), Ok(cursor));
        let tampered = token.replacen("42", "43", 1);
        assert!(decode(&tampered, fp).is_err());
        assert!(decode(&token, fingerprint("default", &query(2))).is_err());
        assert!(decode(&token, fingerprint("other", &query(1))).is_err());
        for junk in ["", ".", "a.b.c.d.e", "\u{0}", "1.2.3.4"] {
            assert!(decode(junk, fp).is_err(), "{junk:?}");
        }
    }
}
