//! The generated gRPC API (`proto/headline_dedup/v1/dedup_service.proto`),
//! with the proto3 JSON mapping of its messages (pbjson).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("headline_dedup.v1");

include!(concat!(env!("OUT_DIR"), "/headline_dedup.v1.serde.rs"));

/// The encoded descriptor set that server reflection serves.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("headline_dedup_descriptor");

/// The well-known protobuf types the API uses, with their proto3 JSON forms.
pub mod wkt {
    use std::fmt;
    use std::str::FromStr;

    /// `google.protobuf.Timestamp`: in JSON an RFC 3339 time, written in UTC
    /// with a `Z` and 0, 3, 6 or 9 fractional digits, read with any offset.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, ::prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    impl From<Timestamp> for prost_types::Timestamp {
        fn from(t: Timestamp) -> Self {
            Self { seconds: t.seconds, nanos: t.nanos }
        }
    }

    impl fmt::Display for Timestamp {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            prost_types::Timestamp::from(*self).fmt(f)
        }
    }

    impl FromStr for Timestamp {
        type Err = prost_types::TimestampError;

        fn from_str(s: &str) -> Result<Self, Self::Err> {
            let t = prost_types::Timestamp::from_str(s)?;
            Ok(Self { seconds: t.seconds, nanos: t.nanos })
        }
    }

    impl serde::Serialize for Timestamp {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self)
        }
    }

    impl<'de> serde::Deserialize<'de> for Timestamp {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            text.parse().map_err(|_| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
        }
    }
}
