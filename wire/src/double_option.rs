//! `Option<Option<T>>` fields that survive MessagePack: "leave it" (`None`), "clear it"
//! (`Some(None)`) and "set it" (`Some(Some(v))`) stay three different things.
//!
//! MessagePack has one `nil` and rmp-serde writes both `None` and `Some(None)` as it, so a
//! patch that clears a field would arrive as one that leaves it (`service update
//! --no-healthcheck` did nothing, on the control socket and in the Raft log alike). With
//! `#[serde(default, with = "symphony_wire::double_option")]` on the field:
//! - `None` is `nil` (or the field left out), as before;
//! - `Some(Some(v))` is `v`, as before;
//! - `Some(None)` is an empty array, which older readers refuse instead of misreading.
//!
//! So everything written before this module existed reads as it was meant. `T` must not itself
//! encode as an array (the fields using this hold strings, numbers and structs).

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

/// Writes `value` as described in the module's documentation.
pub fn serialize<T: Serialize, S: Serializer>(
    value: &Option<Option<T>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        None => serializer.serialize_none(),
        Some(None) => serializer.serialize_tuple(0)?.end(),
        Some(Some(value)) => value.serialize(serializer),
    }
}

/// Reads what [`serialize`] wrote (and everything written before it).
pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Ok(match Option::<Wire<T>>::deserialize(deserializer)? {
        None => None,
        Some(Wire::Cleared(Cleared)) => Some(None),
        Some(Wire::Set(value)) => Some(Some(value)),
    })
}

/// A present value: the clearing marker, or a value.
#[derive(Deserialize)]
#[serde(untagged)]
enum Wire<T> {
    Cleared(Cleared),
    Set(T),
}

/// The empty array that says "clear it".
struct Cleared;

impl<'de> Deserialize<'de> for Cleared {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Cleared, D::Error> {
        struct Empty;
        impl<'de> Visitor<'de> for Empty {
            type Value = Cleared;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an empty array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cleared, A::Error> {
                match seq.next_element::<IgnoredAny>()? {
                    None => Ok(Cleared),
                    Some(_) => Err(de::Error::invalid_length(1, &self)),
                }
            }
        }
        deserializer.deserialize_seq(Empty)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde::{Deserialize, Serialize};

    use crate::frame::{decode, encode};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Check {
        command: Vec<String>,
        interval_ms: u64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Patch {
        #[serde(default, with = "super")]
        health: Option<Option<Check>>,
        #[serde(default, with = "super")]
        workdir: Option<Option<String>>,
        #[serde(default, with = "super")]
        attempts: Option<Option<u32>>,
    }

    /// How the patch was written before this module: plain double options.
    #[derive(Serialize, Deserialize)]
    struct Before {
        health: Option<Option<Check>>,
        workdir: Option<Option<String>>,
        attempts: Option<Option<u32>>,
    }

    fn check() -> Check {
        Check {
            command: vec!["true".into()],
            interval_ms: 5,
        }
    }

    #[test]
    fn leave_clear_and_set_stay_apart_in_messagepack_and_json() {
        for patch in [
            Patch {
                health: None,
                workdir: None,
                attempts: None,
            },
            Patch {
                health: Some(None),
                workdir: Some(None),
                attempts: Some(None),
            },
            Patch {
                health: Some(Some(check())),
                workdir: Some(Some("/srv".into())),
                attempts: Some(Some(0)),
            },
            Patch {
                health: Some(None),
                workdir: Some(Some(String::new())),
                attempts: None,
            },
        ] {
            assert_eq!(decode::<Patch>(&encode(&patch).unwrap()).unwrap(), patch);
            let json = serde_json::to_string(&patch).unwrap();
            assert_eq!(
                serde_json::from_str::<Patch>(&json).unwrap(),
                patch,
                "{json}"
            );
        }
    }

    #[test]
    fn what_was_written_before_reads_as_it_was_meant() {
        // `Some(None)` could not be written before (it became nil): nil is "leave it".
        let old = encode(&Before {
            health: None,
            workdir: Some(Some("/srv".into())),
            attempts: Some(Some(3)),
        })
        .unwrap();
        assert_eq!(
            decode::<Patch>(&old).unwrap(),
            Patch {
                health: None,
                workdir: Some(Some("/srv".into())),
                attempts: Some(Some(3)),
            }
        );
        #[derive(Serialize)]
        struct Empty {}
        assert_eq!(
            decode::<Patch>(&encode(&Empty {}).unwrap()).unwrap(),
            Patch {
                health: None,
                workdir: None,
                attempts: None,
            }
        );
    }

    #[test]
    fn an_array_with_something_in_it_is_no_clearing() {
        #[derive(Serialize)]
        struct Odd {
            attempts: Vec<u32>,
        }
        assert!(decode::<Patch>(&encode(&Odd { attempts: vec![1] }).unwrap()).is_err());
    }
}
