//! Access tokens: compact JWS (HS256) signed with a key from a secret variable, verified without any store
//! round trip.
//!
//! HMAC rather than an asymmetric signature because every verifier is our own code holding the same
//! secret (the auth component composed into each function), so there are no public keys to publish; the
//! `kid` header names the key, so a new key can sign while old ones still verify until their tokens expire.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Who issued a token; a token from anywhere else is refused.
pub const ISSUER: &str = "edgerag";

/// The shortest signing secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user id.
    pub sub: String,
    /// The session (refresh-token family) the token belongs to; revoking it revokes the token.
    pub sid: String,
    /// Issued at and expires at, seconds since the Unix epoch.
    pub iat: u64,
    pub exp: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

/// Why a token was refused. Clients only ever see "not valid" or "expired".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token is signed with an unknown key")]
    UnknownKey,
    #[error("the access token's signature does not match")]
    BadSignature,
    #[error("the access token has expired")]
    Expired,
}

/// The keys tokens are signed and verified with: the first signs, all verify.
#[derive(Clone)]
pub struct SigningKeys {
    keys: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("SigningKeys").field("ids", &ids).finish()
    }
}

impl SigningKeys {
    /// Parses `kid:secret[,kid:secret...]` (the `auth_signing_keys` variable). Key ids are 1 to 32
    /// letters, digits, '-' or '_'; secrets at least 32 bytes.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, secret) = entry
                .split_once(':')
                .ok_or("each signing key is written `kid:secret`")?;
            let id_ok = (1..=32).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !id_ok {
                return Err(format!(
                    "signing key id `{id}` must be 1 to 32 letters, digits, '-' or '_'"
                ));
            }
            if secret.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "signing key `{id}` is shorter than {MIN_SECRET_BYTES} bytes"
                ));
            }
            if keys.iter().any(|(other, _)| other == id) {
                return Err(format!("signing key id `{id}` appears twice"));
            }
            keys.push((id.to_string(), secret.as_bytes().to_vec()));
        }
        if keys.is_empty() {
            return Err("no signing key is configured".into());
        }
        Ok(Self { keys })
    }

    /// The signed compact token for `claims`, under the first key.
    pub fn sign(&self, claims: &Claims) -> String {
        let (kid, secret) = &self.keys[0];
        let header = Header {
            alg: "HS256".into(),
            typ: "JWT".into(),
            kid: kid.clone(),
        };
        let mut token = encode_json(&header);
        token.push('.');
        token.push_str(&encode_json(claims));
        let signature = mac(secret, token.as_bytes()).finalize().into_bytes();
        token.push('.');
        token.push_str(&B64.encode(signature));
        token
    }

    /// The claims of a token signed by one of the keys, issued by edgerag and not expired at `now` (seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let signed = &token[..header.len() + 1 + payload.len()];
        let header: Header = decode_json(header)?;
        if header.alg != "HS256" {
            return Err(TokenError::Malformed);
        }
        let (_, secret) = self
            .keys
            .iter()
            .find(|(id, _)| *id == header.kid)
            .ok_or(TokenError::UnknownKey)?;
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        mac(secret, signed.as_bytes())
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims = decode_json(payload)?;
        if claims.iss != ISSUER {
            return Err(TokenError::Malformed);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn mac(secret: &[u8], data: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(data);
    mac
}

fn encode_json(value: &impl Serialize) -> String {
    B64.encode(serde_json::to_vec(value).expect("token parts serialise"))
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str) -> Result<T, TokenError> {
    let bytes = B64.decode(part).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:0123456789abcdef0123456789abcdef";
    const K2: &str = "k2:fedcba9876543210fedcba9876543210";

    fn claims(exp: u64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: "u1".into(),
            sid: "s1".into(),
            iat: 100,
            exp,
        }
    }

    fn check(keys: &str, token: &str, now: u64, expected: Result<&str, TokenError>) {
        let keys = SigningKeys::parse(keys).unwrap();
        let got = keys.verify(token, now).map(|c| c.sub);
        assert_eq!(got.as_deref().map_err(|e| *e), expected, "{token}");
    }

    #[test]
    fn tokens_verify_until_they_expire() {
        let token = SigningKeys::parse(K1).unwrap().sign(&claims(200));
        check(K1, &token, 150, Ok("u1"));
        check(K1, &token, 200, Err(TokenError::Expired));
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_while_the_old_key_is_listed() {
        let old = SigningKeys::parse(K1).unwrap().sign(&claims(200));
        let rotated = format!("{K2},{K1}");
        check(&rotated, &old, 150, Ok("u1"));
        check(K2, &old, 150, Err(TokenError::UnknownKey));
        let new = SigningKeys::parse(&rotated).unwrap().sign(&claims(200));
        assert!(new.starts_with(&encode_json(&Header {
            alg: "HS256".into(),
            typ: "JWT".into(),
            kid: "k2".into()
        })));
    }

    #[test]
    fn tampering_is_detected() {
        let token = SigningKeys::parse(K1).unwrap().sign(&claims(200));
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims(10_000);
        forged.sub = "admin".into();
        let swapped = format!("{}.{}.{}", parts[0], encode_json(&forged), parts[2]);
        check(K1, &swapped, 150, Err(TokenError::BadSignature));
        // A token claiming "alg: none" with an empty signature must not pass (the classic JWT bug).
        let none = format!(
            "{}.{}.",
            B64.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
            parts[1]
        );
        check(K1, &none, 150, Err(TokenError::Malformed));
        // The same key id with a different secret.
        let other = SigningKeys::parse("k1:zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz")
            .unwrap()
            .sign(&claims(200));
        check(K1, &other, 150, Err(TokenError::BadSignature));
        check(K1, "a.b", 150, Err(TokenError::Malformed));
        check(K1, "a.b.c.d", 150, Err(TokenError::Malformed));
        check(K1, "", 150, Err(TokenError::Malformed));
    }

    #[test]
    fn key_specs_are_validated() {
        for (spec, needle) in [
            ("", "no signing key"),
            ("k1", "kid:secret"),
            ("k1:short", "shorter than 32"),
            ("bad id:0123456789abcdef0123456789abcdef", "must be 1 to 32"),
            (&format!("{K1},{K1}"), "appears twice"),
        ] {
            let error = SigningKeys::parse(spec).unwrap_err();
            assert!(error.contains(needle), "{spec}: {error}");
        }
        let debug = format!("{:?}", SigningKeys::parse(K1).unwrap());
        assert!(
            !debug.contains("0123456789"),
            "secrets stay out of Debug: {debug}"
        );
    }
}

/// The subject of a purge token: what auth signs, with the project as its `sid`, to have ingest
/// remove a purged project's documents, chunks, points and files. It opens no account route (no
/// sign-in has that id) and is valid for a minute.
pub const PURGE_SUBJECT: &str = "purge";

impl SigningKeys {
    /// A token that lets its bearer purge `project`'s knowledge until `now + 60`.
    pub fn purge_token(&self, project: &str, now: u64) -> String {
        self.sign(&Claims {
            iss: ISSUER.into(),
            sub: PURGE_SUBJECT.into(),
            sid: project.into(),
            iat: now,
            exp: now + 60,
        })
    }

    /// Whether `token` is a valid purge token for `project`.
    pub fn allows_purge(&self, token: &str, project: &str, now: u64) -> bool {
        self.verify(token, now)
            .is_ok_and(|claims| claims.sub == PURGE_SUBJECT && claims.sid == project)
    }
}

#[cfg(test)]
mod purge_tests {
    use super::*;

    #[test]
    fn a_purge_token_is_for_one_project_and_a_minute() {
        let keys = SigningKeys::parse(&format!("k1:{}", "s".repeat(32))).unwrap();
        let token = keys.purge_token("p1", 1000);
        assert!(keys.allows_purge(&token, "p1", 1059));
        assert!(!keys.allows_purge(&token, "p1", 1060));
        assert!(!keys.allows_purge(&token, "p2", 1000));
        let other = SigningKeys::parse(&format!("k1:{}", "t".repeat(32))).unwrap();
        assert!(!other.allows_purge(&token, "p1", 1000));
        // An access token is not a purge token.
        let access = keys.sign(&Claims {
            iss: ISSUER.into(),
            sub: "user1".into(),
            sid: "p1".into(),
            iat: 1000,
            exp: 2000,
        });
        assert!(!keys.allows_purge(&access, "p1", 1000));
    }
}
