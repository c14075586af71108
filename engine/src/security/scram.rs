//! The client side of SCRAM (RFC 5802) with SHA-256 (RFC 7677) or SHA-512,
//! as Kafka uses it: no channel binding (`n,,`), no authorization identity,
//! usernames escaped (`=` as `=3D`, `,` as `=2C`) but not SASLprep'd, and at
//! least 4096 PBKDF2 iterations (Kafka's own minimum, which its Java client
//! also insists on, so a server cannot talk a client down to a cheap hash).
//!
//! Written by hand over ring's PBKDF2/HMAC/digest (ring is already here as
//! rustls' crypto provider): the message handling is a few dozen lines, and
//! the SCRAM crates on crates.io are either unmaintained or whole SASL
//! frameworks.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::{digest, hmac, pbkdf2};
use std::num::NonZeroU32;

/// Kafka's minimum iteration count (`ScramMechanism.minIterations`).
pub const MIN_ITERATIONS: u32 = 4096;

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramHash::Sha256 => hmac::HMAC_SHA256,
            ScramHash::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramHash::Sha256 => &digest::SHA256,
            ScramHash::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramHash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramHash::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn len(self) -> usize {
        self.digest().output_len()
    }
}

/// Why a SCRAM exchange failed on the client side. Messages never contain
/// the password or anything derived from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("the server's SCRAM message is malformed: {0}")]
    Malformed(&'static str),
    #[error("the server's nonce does not extend the client's (a replayed or forged exchange)")]
    NonceMismatch,
    #[error("the server asks for {0} PBKDF2 iterations; Kafka requires at least {MIN_ITERATIONS}")]
    TooFewIterations(u32),
    #[error("the server requires an unsupported SCRAM extension")]
    MandatoryExtension,
    #[error("the server's signature is wrong: it does not know this user's credentials (or the exchange was tampered with)")]
    BadServerSignature,
    /// The server's `e=` answer in its final message.
    #[error("{0}")]
    Server(String),
}

/// A SCRAM client before the server's first message.
pub struct ScramClient {
    hash: ScramHash,
    password: String,
    nonce: String,
    client_first_bare: String,
}

/// What the client needs to check the server's final message.
pub struct ServerVerifier {
    server_key: hmac::Key,
    auth_message: String,
}

const GS2_HEADER: &str = "n,,";

impl ScramClient {
    /// A client with a fresh random nonce.
    pub fn new(hash: ScramHash, username: &str, password: &str) -> Self {
        let mut bytes = [0u8; 24];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .expect("the system random number generator works");
        Self::with_nonce(hash, username, password, &B64.encode(bytes))
    }

    /// A client with a given nonce (printable ASCII without ','), for tests.
    pub fn with_nonce(hash: ScramHash, username: &str, password: &str, nonce: &str) -> Self {
        let escaped = username.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            hash,
            password: password.to_owned(),
            nonce: nonce.to_owned(),
            client_first_bare: format!("n={escaped},r={nonce}"),
        }
    }

    /// The client-first message.
    pub fn client_first(&self) -> Vec<u8> {
        format!("{GS2_HEADER}{}", self.client_first_bare).into_bytes()
    }

    /// Takes the server-first message; returns the client-final message and
    /// what the server-final message must prove.
    pub fn handle_server_first(
        self,
        server_first: &[u8],
    ) -> Result<(Vec<u8>, ServerVerifier), ScramError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::Malformed("server-first is not UTF-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for (i, attr) in server_first.split(',').enumerate() {
            match attr.split_once('=') {
                Some(("m", _)) if i == 0 => return Err(ScramError::MandatoryExtension),
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                Some((k, _)) if k.len() == 1 => {} // optional extensions
                _ => return Err(ScramError::Malformed("server-first has a bad attribute")),
            }
        }
        let nonce = nonce.ok_or(ScramError::Malformed("server-first has no nonce"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = B64
            .decode(salt.ok_or(ScramError::Malformed("server-first has no salt"))?)
            .map_err(|_| ScramError::Malformed("the salt is not base64"))?;
        let iterations: u32 = iterations
            .ok_or(ScramError::Malformed("server-first has no iteration count"))?
            .parse()
            .map_err(|_| ScramError::Malformed("the iteration count is not a number"))?;
        if iterations < MIN_ITERATIONS {
            return Err(ScramError::TooFewIterations(iterations));
        }

        let h = self.hash;
        let mut salted = vec![0u8; h.len()];
        pbkdf2::derive(
            h.pbkdf2(),
            NonZeroU32::new(iterations).expect("at least MIN_ITERATIONS"),
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let salted = hmac::Key::new(h.hmac(), &salted);
        let client_key = hmac::sign(&salted, b"Client Key");
        let stored_key = digest::digest(h.digest(), client_key.as_ref());
        let without_proof = format!("c={},r={nonce}", B64.encode(GS2_HEADER));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac::sign(
            &hmac::Key::new(h.hmac(), stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_signature.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac::sign(&salted, b"Server Key");
        let client_final = format!("{without_proof},p={}", B64.encode(proof)).into_bytes();
        Ok((
            client_final,
            ServerVerifier {
                server_key: hmac::Key::new(h.hmac(), server_key.as_ref()),
                auth_message,
            },
        ))
    }
}

impl ServerVerifier {
    /// Checks the server-final message (`v=...`, or the server's `e=...`).
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let msg = std::str::from_utf8(server_final)
            .map_err(|_| ScramError::Malformed("server-final is not UTF-8"))?;
        let first = msg.split(',').next().unwrap_or("");
        if let Some(e) = first.strip_prefix("e=") {
            return Err(ScramError::Server(format!("the server says: {e}")));
        }
        let v = first
            .strip_prefix("v=")
            .ok_or(ScramError::Malformed("server-final has no verifier"))?;
        let got = B64
            .decode(v)
            .map_err(|_| ScramError::Malformed("the server verifier is not base64"))?;
        // ServerSignature = HMAC(ServerKey, AuthMessage), compared in
        // constant time by ring.
        hmac::verify(&self.server_key, self.auth_message.as_bytes(), &got)
            .map_err(|_| ScramError::BadServerSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc7677() -> ScramClient {
        ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", NONCE)
    }

    #[test]
    fn rfc7677_sha256_test_vector() {
        let c = rfc7677();
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let (client_final, verifier) = c.handle_server_first(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(client_final).unwrap(), CLIENT_FINAL);
        verifier
            .verify_server_final(SERVER_FINAL.as_bytes())
            .unwrap();
    }

    #[test]
    fn a_wrong_server_signature_is_refused() {
        let (_, verifier) = rfc7677()
            .handle_server_first(SERVER_FIRST.as_bytes())
            .unwrap();
        let forged = "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
        assert_eq!(
            verifier.verify_server_final(forged.as_bytes()),
            Err(ScramError::BadServerSignature)
        );
        assert!(matches!(
            verifier.verify_server_final(b"e=invalid-proof"),
            Err(ScramError::Server(m)) if m.contains("invalid-proof")
        ));
    }

    #[test]
    fn a_nonce_that_does_not_extend_ours_is_refused() {
        let msg = SERVER_FIRST.replace("rOprNG", "XXXXXX");
        assert_eq!(
            rfc7677().handle_server_first(msg.as_bytes()).err(),
            Some(ScramError::NonceMismatch)
        );
    }

    #[test]
    fn too_few_iterations_are_refused() {
        let msg = SERVER_FIRST.replace("i=4096", "i=1");
        assert_eq!(
            rfc7677().handle_server_first(msg.as_bytes()).err(),
            Some(ScramError::TooFewIterations(1))
        );
    }

    #[test]
    fn usernames_are_escaped() {
        let c = ScramClient::with_nonce(ScramHash::Sha512, "a=b,c", "p", "n0nce");
        assert_eq!(c.client_first(), b"n,,n=a=3Db=2Cc,r=n0nce");
    }

    #[test]
    fn sha512_round_trip_against_an_independent_server_computation() {
        // The server side of SCRAM-SHA-512 computed here from the RFC
        // formulas, so the client's SHA-512 path is checked end to end.
        let (user, pass, salt, iters) = ("alice", "s3cret", b"salt-of-16-bytes", 4096u32);
        let c = ScramClient::with_nonce(ScramHash::Sha512, user, pass, "abc");
        let server_first = format!("r=abcdef,s={},i={iters}", B64.encode(salt));
        let (client_final, verifier) = c.handle_server_first(server_first.as_bytes()).unwrap();
        let client_final = String::from_utf8(client_final).unwrap();
        let (without_proof, proof) = client_final.rsplit_once(",p=").unwrap();

        let mut salted = [0u8; 64];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA512,
            NonZeroU32::new(iters).unwrap(),
            salt,
            pass.as_bytes(),
            &mut salted,
        );
        let salted = hmac::Key::new(hmac::HMAC_SHA512, &salted);
        let stored = digest::digest(&digest::SHA512, hmac::sign(&salted, b"Client Key").as_ref());
        let auth = format!("n={user},r=abc,{server_first},{without_proof}");
        let sig = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA512, stored.as_ref()),
            auth.as_bytes(),
        );
        let client_key: Vec<u8> = B64
            .decode(proof)
            .unwrap()
            .iter()
            .zip(sig.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(
            digest::digest(&digest::SHA512, &client_key).as_ref(),
            stored.as_ref(),
            "the proof recovers the stored key"
        );
        let server_key = hmac::sign(&salted, b"Server Key");
        let v = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA512, server_key.as_ref()),
            auth.as_bytes(),
        );
        verifier
            .verify_server_final(format!("v={}", B64.encode(v.as_ref())).as_bytes())
            .unwrap();
    }
}
