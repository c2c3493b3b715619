//! The harnesses behind `fuzz_targets/`: each takes the bytes libFuzzer makes up and hands them
//! to the function a Symphony node calls on bytes from the network (or its disk), then checks what must hold
//! whatever the bytes were. A panic anywhere (libfuzzer-sys turns one into an abort, in any
//! thread) or a failed check is a crash, saved under `fuzz/artifacts/<target>/`.
//!
//! - [`frame`]: a whole framed connection as a server reads it: the codec (length prefixes,
//!   the size limit, the memory budget), the hello, and the serve loop's answers;
//! - [`control`]: one frame of the control protocol, as the agent decodes a request and the
//!   client a response;
//! - [`remote`]: the same for the node-to-node API;
//! - [`raft`]: the frames of one Raft connection: each decoded and checked by the guard, the
//!   snapshot chunks reassembled and the snapshot decoded; and the replies a Raft client reads
//!   (the `Identify` answer among them);
//! - [`gossip`]: received UDP packets, plain and sealed, through the replay guard to foca;
//! - [`token`]: join tokens as an operator or a joining node gives them;
//! - [`csr`]: certificate requests a joining node sends, issued by the leader's CA;
//! - [`cert`]: certificates and CA bundles a peer presents;
//! - [`wal`]: a Raft log segment's records as a manager replays them at start, torn or
//!   damaged (bytes from the disk, not the network);
//! - [`seeds`]: seed inputs made from real messages (the `seeds` example writes them into
//!   `fuzz/corpus/<target>/`).

pub mod cert;
pub mod control;
pub mod csr;
pub mod fixture;
pub mod frame;
pub mod gossip;
pub mod raft;
pub mod remote;
pub mod seeds;
pub mod token;
pub mod wal;

mod script;

use serde::Serialize;
use serde::de::DeserializeOwned;
use symphony_wire::frame as wire_frame;

/// A value decoded from the wire is passed on by the node (a forwarded request, a relayed
/// join): it must encode, the encoding must decode, and encoding that gives the same bytes.
pub(crate) fn passes_on<T: Serialize + DeserializeOwned>(value: &T) {
    let first = wire_frame::encode(value).expect("a decoded value encodes");
    let again: T = wire_frame::decode(&first).expect("what a node sends on decodes");
    let second = wire_frame::encode(&again).expect("a decoded value encodes");
    assert_eq!(
        first, second,
        "a value changed on its way through MessagePack"
    );
}
