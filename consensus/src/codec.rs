//! How everything the store keeps is encoded: MessagePack with named fields, like everything on
//! the wire, so a newer version can add a field and still read what an older one wrote.

use std::io;

use serde::{Serialize, de::DeserializeOwned};

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    rmp_serde::to_vec_named(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
