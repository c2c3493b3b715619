//! Who a certificate names: the cluster, the role and the node id, carried in one URI SAN
//! `symphony://<cluster id>/<manager|worker>/<node id>`. The issuing manager writes it from
//! its own records, never from the request; every call checks it, not only the CA.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::PkiError;

/// The URI scheme of a Symphony identity.
pub const SCHEME: &str = "symphony://";

/// The role a certificate grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertRole {
    Manager,
    Worker,
}

impl CertRole {
    pub fn as_str(self) -> &'static str {
        match self {
            CertRole::Manager => "manager",
            CertRole::Worker => "worker",
        }
    }
}

impl fmt::Display for CertRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity a certificate proves.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CertIdentity {
    pub cluster_id: String,
    pub role: CertRole,
    pub node_id: u64,
}

impl CertIdentity {
    /// The URI SAN naming this identity.
    pub fn uri(&self) -> String {
        format!(
            "{SCHEME}{}/{}/{}",
            self.cluster_id,
            self.role.as_str(),
            self.node_id
        )
    }

    /// Reads a URI SAN; anything that is not exactly `symphony://<cluster>/<role>/<id>` with
    /// a non-empty hexadecimal-or-word cluster id, a known role and a non-zero id is refused.
    pub fn from_uri(uri: &str) -> Result<CertIdentity, PkiError> {
        let no_identity = |detail: &str| PkiError::NoIdentity {
            detail: format!("{detail} in {uri:?}"),
        };
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| no_identity("no symphony:// scheme"))?;
        let mut parts = rest.split('/');
        let (Some(cluster_id), Some(role), Some(node_id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(no_identity("not three parts"));
        };
        if cluster_id.is_empty()
            || !cluster_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(no_identity("a malformed cluster id"));
        }
        let role = match role {
            "manager" => CertRole::Manager,
            "worker" => CertRole::Worker,
            _ => return Err(no_identity("an unknown role")),
        };
        let node_id: u64 = node_id
            .parse()
            .map_err(|_| no_identity("a malformed node id"))?;
        if node_id == 0 {
            return Err(no_identity("node id 0"));
        }
        Ok(CertIdentity {
            cluster_id: cluster_id.to_string(),
            role,
            node_id,
        })
    }
}

impl fmt::Display for CertIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} of cluster {}",
            self.role, self.node_id, self.cluster_id
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn uri_round_trips() {
        let identity = CertIdentity {
            cluster_id: "0af3".into(),
            role: CertRole::Worker,
            node_id: 77,
        };
        assert_eq!(identity.uri(), "symphony://0af3/worker/77");
        assert_eq!(CertIdentity::from_uri(&identity.uri()).unwrap(), identity);
    }

    #[test]
    fn malformed_uris_are_refused() {
        for uri in [
            "https://c/worker/1",
            "symphony://c/worker",
            "symphony://c/worker/1/extra",
            "symphony:///worker/1",
            "symphony://c/admin/1",
            "symphony://c/manager/0",
            "symphony://c/manager/-1",
            "symphony://c d/manager/1",
            "symphony://c/manager/x",
        ] {
            assert!(
                matches!(
                    CertIdentity::from_uri(uri),
                    Err(PkiError::NoIdentity { .. })
                ),
                "{uri}"
            );
        }
    }
}
