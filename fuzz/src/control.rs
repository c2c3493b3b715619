//! Target `control`: one frame of the control protocol, as the agent's serve loop decodes a
//! request ([`symphony_wire::serve::decode_request`]) and as `symphony-ctl`'s client decodes a
//! response ([`symphony_wire::mux::decode_response`]).
//!
//! Checked: a request that decodes has a route; one that does not becomes the typed error the
//! serve loop sends, and that error encodes; whatever decodes passes on unchanged (a manager
//! forwards control requests to the leader, and relays its answers back).

use symphony_ctl::proto::{Ctl, CtlError, Response};
use symphony_wire::{Body, ResponseFrame, frame, mux, serve};

use crate::passes_on;

pub fn run(data: &[u8]) {
    match serve::decode_request::<Ctl>(data) {
        Ok(request) => {
            if let Some(inner) = &request.request {
                assert!(!inner.spec().name.is_empty());
            } else {
                assert!(request.cancel, "a frame without a request is a cancel");
            }
            passes_on(&request);
        }
        Err((id, fault)) => {
            let error = ResponseFrame::<Response, CtlError> {
                id,
                body: Body::Error(CtlError::from(fault)),
            };
            frame::encode(&error).expect("the error for a bad frame encodes");
        }
    }
    if let Ok(response) = mux::decode_response::<Ctl>(data) {
        passes_on(&response);
    }
}
