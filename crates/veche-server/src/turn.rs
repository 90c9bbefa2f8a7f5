//! Short-lived TURN credentials for each participant, in the TURN REST scheme that coturn's
//! `use-auth-secret` checks (draft-uberti-behave-turn-rest-00): the username is
//! `EXPIRY:PARTICIPANT_ID` (Unix seconds), the password the base64 HMAC-SHA1 of the username
//! under a secret shared with the TURN server. A leaked credential works until its expiry
//! only, and the secret never leaves the server.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use veche_proto::{IceServer, ParticipantId};

/// The TURN servers handed to participants and how their credentials are made.
#[derive(Clone)]
pub(crate) struct TurnRest {
    pub(crate) urls: Vec<String>,
    pub(crate) secret: String,
    /// How long a credential stays valid; a TURN allocation refreshes with it, so it must
    /// outlast a meeting.
    pub(crate) ttl: Duration,
}

/// Without the secret: it must not reach a log.
impl std::fmt::Debug for TurnRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnRest")
            .field("urls", &self.urls)
            .field("secret", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl TurnRest {
    /// The `iceServers` entry for `participant`, valid from `now_unix_secs` for the TTL.
    pub(crate) fn ice_servers(
        &self,
        participant: ParticipantId,
        now_unix_secs: u64,
    ) -> Vec<IceServer> {
        let expiry = now_unix_secs.saturating_add(self.ttl.as_secs());
        let username = format!("{expiry}:{participant}");
        let credential = self.password(&username);
        vec![IceServer {
            urls: self.urls.clone(),
            username,
            credential,
        }]
    }
}

impl TurnRest {
    /// The password of `username` under the secret: base64 HMAC-SHA1 of the username.
    fn password(&self, username: &str) -> String {
        // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
        let mut mac = Hmac::<Sha1>::new_from_slice(self.secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(username.as_bytes());
        BASE64.encode(mac.finalize().into_bytes())
    }

    /// What the built-in TURN server checks: `username` is `EXPIRY:ID` with an expiry not
    /// past at `now_unix_secs`; its password is then the one minted for it. A username this
    /// server did not mint gets a password the client cannot know, so the message integrity
    /// check refuses it.
    pub(crate) fn password_for(
        &self,
        username: &str,
        now_unix_secs: u64,
    ) -> Result<String, CredentialError> {
        let (expiry, id) = username.split_once(':').ok_or(CredentialError::Malformed)?;
        let expiry: u64 = expiry.parse().map_err(|_| CredentialError::Malformed)?;
        if id.is_empty() || id.len() > 32 {
            return Err(CredentialError::Malformed);
        }
        if expiry < now_unix_secs {
            return Err(CredentialError::Expired { expiry });
        }
        Ok(self.password(username))
    }
}

/// Why a TURN username is refused before its message integrity is even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CredentialError {
    #[error("turn username is not EXPIRY:ID")]
    Malformed,
    #[error("turn credential expired at {expiry}")]
    Expired { expiry: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        let turn = TurnRest {
            urls: vec!["turn:turn.example.org:443?transport=tcp".into()],
            secret: "s3cret-shared-with-coturn".into(),
            ttl: Duration::from_secs(21600),
        };
        let servers = turn.ice_servers(42, 1_700_000_000);
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].urls, turn.urls);
        assert_eq!(servers[0].username, "1700021600:42");
        // `echo -n 1700021600:42 | openssl dgst -sha1 -hmac s3cret-shared-with-coturn -binary | base64`
        assert_eq!(servers[0].credential, "GL9dT5ve43xDtTJ9iRKaMXv+EqI=");
        assert!(!format!("{turn:?}").contains("s3cret"));
        assert_eq!(
            turn.password_for(&servers[0].username, 1_700_021_600),
            Ok(servers[0].credential.clone())
        );
        assert_eq!(
            turn.password_for(&servers[0].username, 1_700_021_601),
            Err(CredentialError::Expired {
                expiry: 1_700_021_600
            })
        );
        assert_eq!(turn.password_for("42", 0), Err(CredentialError::Malformed));
        assert_eq!(
            turn.password_for("soon:42", 0),
            Err(CredentialError::Malformed)
        );
    }
}
