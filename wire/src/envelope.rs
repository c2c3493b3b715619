//! Request and response frames: how many calls share one connection.
//!
//! Every request carries an id chosen by the client; every response carries the id of the
//! request it answers, so replies may come back in any order. A plain call gets exactly one
//! [`Body::Reply`] or [`Body::Error`]. A stream (watch, logs, events) gets any number of
//! [`Body::Item`]s under its id and then exactly one [`Body::End`] — or a [`Body::Error`],
//! which ends it too. A client that no longer wants a stream sends a cancel frame with the
//! stream's id.

use serde::{Deserialize, Serialize};

/// One request, or the cancellation of a stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestFrame<T> {
    pub id: u64,
    /// `None` only in a cancel frame.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub request: Option<T>,
    /// Stop the stream with this id (its server side stops producing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel: bool,
}

fn none<T>() -> Option<T> {
    None
}

impl<T> RequestFrame<T> {
    pub fn new(id: u64, request: T) -> RequestFrame<T> {
        RequestFrame {
            id,
            request: Some(request),
            cancel: false,
        }
    }

    pub fn cancel(id: u64) -> RequestFrame<T> {
        RequestFrame {
            id,
            request: None,
            cancel: true,
        }
    }
}

/// Just the id of a frame. A server decodes this when the whole frame does not decode, so
/// that its error still goes out under the right id.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct RequestId {
    pub id: u64,
}

/// One response frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseFrame<T, E> {
    pub id: u64,
    pub body: Body<T, E>,
}

/// What a response frame carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Body<T, E> {
    /// The one answer to a plain call.
    Reply(T),
    /// The call failed (or the stream ended in failure).
    Error(E),
    /// One item of a stream.
    Item(T),
    /// The stream is over: nothing more comes under this id.
    End,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::frame::{decode, encode};

    #[test]
    fn frames_round_trip_and_the_id_decodes_alone() {
        let bytes = encode(&RequestFrame::new(42, "status".to_string())).unwrap();
        let back: RequestFrame<String> = decode(&bytes).unwrap();
        assert_eq!(
            (back.id, back.request.as_deref(), back.cancel),
            (42, Some("status"), false)
        );
        assert_eq!(decode::<RequestId>(&bytes).unwrap().id, 42);

        let cancel: RequestFrame<String> =
            decode(&encode(&RequestFrame::<String>::cancel(9)).unwrap()).unwrap();
        assert_eq!((cancel.id, cancel.request, cancel.cancel), (9, None, true));

        let item: ResponseFrame<u32, String> = decode(
            &encode(&ResponseFrame::<u32, String> {
                id: 3,
                body: Body::Item(7),
            })
            .unwrap(),
        )
        .unwrap();
        assert!(matches!(item.body, Body::Item(7)));
    }
}
