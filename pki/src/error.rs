//! What can go wrong in the PKI, with the fields that say what.

/// A PKI failure. None of these is decided by its message; the variant is the meaning.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen could not make or sign something (a key, a certificate, a request).
    #[error("cannot {what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    /// A PEM or DER blob could not be read as what it should be.
    #[error("cannot read the {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    /// A certificate request's signature does not verify with the key it carries: whoever sent
    /// it does not hold that key.
    #[error("the certificate request is not signed by the key it carries")]
    BadRequestSignature,
    /// The certificate was not issued by any CA of the bundle.
    #[error("the certificate was not issued by this cluster's CA")]
    UnknownIssuer,
    /// The certificate is outside its validity period at `now_s` (seconds since the epoch).
    #[error(
        "the certificate is not valid now (valid from {not_before_s} to {not_after_s}, now {now_s})"
    )]
    Expired {
        not_before_s: i64,
        not_after_s: i64,
        now_s: i64,
    },
    /// The certificate names no Symphony identity (no `symphony://` URI SAN, or one that does
    /// not read).
    #[error("the certificate names no Symphony node: {detail}")]
    NoIdentity { detail: String },
    /// The certificate names a node of another cluster.
    #[error("the certificate belongs to cluster {got}, not {expected}")]
    WrongCluster { expected: String, got: String },
    /// A node certificate lifetime outside what a cluster may set.
    #[error(
        "a certificate lifetime of {asked_s} s is not allowed: it must be between {min_s} s and {max_s} s"
    )]
    Lifetime {
        asked_s: u64,
        min_s: u64,
        max_s: u64,
    },
    /// The bundle holds no certificate.
    #[error("the CA bundle is empty")]
    EmptyBundle,
}

impl PkiError {
    pub(crate) fn generate(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
        move |source| PkiError::Generate { what, source }
    }

    pub(crate) fn malformed(what: &'static str, detail: impl std::fmt::Display) -> PkiError {
        PkiError::Malformed {
            what,
            detail: detail.to_string(),
        }
    }
}
