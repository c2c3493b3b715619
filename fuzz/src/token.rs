//! Target `token`: a join token as an operator types it (`join --token`) and as a joining
//! node's `Join` carries it to the leader: [`JoinToken::parse`], and the agent's
//! `tokens::parse` and `tokens::is_worker_token` over it.
//!
//! Checked: the agent's readings agree with the parser; a token that reads prints as the
//! canonical token (lowercase 64-digit digest and secret) and reads back as itself, and
//! admits itself.

use symphony_agent::tokens;
use symphony_pki::{CertRole, JoinToken};

pub fn run(data: &[u8]) {
    // Tokens reach a node as strings (a command line, a MessagePack str): UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = JoinToken::parse(text);
    assert_eq!(tokens::parse(text).is_ok(), parsed.is_ok());
    assert_eq!(
        tokens::is_worker_token(text),
        parsed
            .as_ref()
            .is_ok_and(|token| token.role == CertRole::Worker)
    );
    let Ok(token) = parsed else {
        return;
    };
    let canonical = |part: &str| {
        part.len() == 64
            && part
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    };
    assert!(canonical(&token.ca_digest) && canonical(&token.secret));
    let shown = token.to_string();
    assert_eq!(JoinToken::parse(&shown).as_ref(), Ok(&token));
    assert!(token.admits(&token));
}
