//! Target `remote`: one frame of the node-to-node API, as a node's remote server decodes a
//! call ([`symphony_wire::serve::decode_request`] with [`Remote`]) and as the pool's client
//! decodes a reply ([`symphony_wire::mux::decode_response`]).
//!
//! Checked: a call that decodes has a route; one that does not becomes the typed error the
//! serve loop sends; whatever decodes passes on unchanged (a worker relays joins to a manager,
//! a manager forwards calls to the leader once).

use symphony_agent::remote::proto::{Remote, RemoteReply};
use symphony_ctl::proto::CtlError;
use symphony_wire::{Body, ResponseFrame, frame, mux, serve};

use crate::passes_on;

pub fn run(data: &[u8]) {
    match serve::decode_request::<Remote>(data) {
        Ok(call) => {
            if let Some(inner) = &call.request {
                assert!(!inner.request.spec().0.is_empty());
            } else {
                assert!(call.cancel, "a frame without a call is a cancel");
            }
            passes_on(&call);
        }
        Err((id, fault)) => {
            let error = ResponseFrame::<RemoteReply, CtlError> {
                id,
                body: Body::Error(CtlError::from(fault)),
            };
            frame::encode(&error).expect("the error for a bad frame encodes");
        }
    }
    if let Ok(reply) = mux::decode_response::<Remote>(data) {
        passes_on(&reply);
    }
}
