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
        // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
        let mut mac = Hmac::<Sha1>::new_from_slice(self.secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(username.as_bytes());
        let credential = BASE64.encode(mac.finalize().into_bytes());
        vec![IceServer {
            urls: self.urls.clone(),
            username,
            credential,
        }]
    }
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
    }
}
