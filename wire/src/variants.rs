//! Telling an unknown request from a malformed one, by structure rather than by the decoder's
//! error text: the name of the variant a frame asks for, and the variants a request type has.

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, Visitor};

use crate::envelope::RequestFrame;

/// The variant a request frame names, if its request is shaped like an enum value (a name, or
/// a map with one key naming the variant).
pub(crate) fn requested_variant(body: &[u8]) -> Option<String> {
    let frame: RequestFrame<Tag> = crate::frame::decode(body).ok()?;
    frame.request.and_then(|tag| tag.0)
}

/// Whether `name` is one of the variants of the enum `T`.
pub(crate) fn is_variant_of<T: DeserializeOwned>(name: &str) -> bool {
    let mut found = None;
    let _ = T::deserialize(Grab { found: &mut found });
    found.is_some_and(|variants: &[&str]| variants.contains(&name))
}

/// An enum value's variant name, whatever its content.
struct Tag(Option<String>);

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Tag, D::Error> {
        struct TagVisitor;
        impl<'de> Visitor<'de> for TagVisitor {
            type Value = Tag;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an enum value")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Tag, E> {
                Ok(Tag(Some(name.to_string())))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tag, A::Error> {
                let name = map.next_key::<String>()?;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Tag(name))
            }
        }
        deserializer.deserialize_any(TagVisitor)
    }
}

/// A deserializer that records the variant list serde passes to `deserialize_enum`, and
/// fails every other way.
struct Grab<'a> {
    found: &'a mut Option<&'static [&'static str]>,
}

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not an enum")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Stop {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for Grab<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        *self.found = Some(variants);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::frame::encode;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    enum Request {
        Status,
        Get { key: String },
    }

    #[test]
    fn variant_names_and_requested_variants() {
        assert!(is_variant_of::<Request>("Status"));
        assert!(is_variant_of::<Request>("Get"));
        assert!(!is_variant_of::<Request>("Teleport"));
        assert!(!is_variant_of::<String>("Status"));

        let unit = encode(&RequestFrame::new(1, Request::Status)).unwrap();
        assert_eq!(requested_variant(&unit).as_deref(), Some("Status"));
        let with_fields = encode(&RequestFrame::new(2, Request::Get { key: "k".into() })).unwrap();
        assert_eq!(requested_variant(&with_fields).as_deref(), Some("Get"));
        #[derive(serde::Serialize)]
        enum Newer {
            Teleport { to: String },
        }
        let newer = encode(&RequestFrame::new(3, Newer::Teleport { to: "mars".into() })).unwrap();
        assert_eq!(requested_variant(&newer).as_deref(), Some("Teleport"));
        assert_eq!(requested_variant(b"\xc1\xc1"), None);
    }
}
