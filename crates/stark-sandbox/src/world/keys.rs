//! The sandbox's own webhook signing keys: the newest signs, the older ones stay listed at
//! `GET /v2/public-key` so that signatures made before a rotation still verify.

use rand::RngExt as _;
use rand_chacha::ChaCha8Rng;
use stark_client::keys::{high_s_twin, signature_to_base64};
use stark_client::{PrivateKey, PublicKey, PublicKeyEntry};
use time::OffsetDateTime;

use crate::clock::timestamp;
use crate::faults::stream;

/// Signing keys, oldest first, and the dice that pick high-S signatures.
#[derive(Debug)]
pub(super) struct SigningKeys {
    /// Each key with its creation timestamp; never empty, the last one signs.
    keys: Vec<(PrivateKey, String)>,
    high_s: ChaCha8Rng,
}

impl SigningKeys {
    /// Starts with `first`; high-S choices come from stream 3 of the behaviour seed.
    pub(super) fn new(first: PrivateKey, now: OffsetDateTime, seed: u64) -> Self {
        Self {
            keys: vec![(first, timestamp(now))],
            high_s: stream(seed, 3),
        }
    }

    /// Adds a new signing key; older keys stay listed.
    pub(super) fn rotate(&mut self, now: OffsetDateTime) -> PublicKey {
        let key = PrivateKey::generate();
        let public = key.public_key();
        self.keys.push((key, timestamp(now)));
        public
    }

    fn newest(&self) -> &PrivateKey {
        &self.keys.last().expect("the sandbox always has a key").0
    }

    /// The key that signs webhooks now.
    pub(super) fn current(&self) -> PublicKey {
        self.newest().public_key()
    }

    /// `GET /v2/public-key` entries, newest first.
    pub(super) fn entries(&self) -> Vec<PublicKeyEntry> {
        self.keys
            .iter()
            .rev()
            .map(|(k, created)| PublicKeyEntry {
                content: k.public_key().to_pem(),
                created: created.clone(),
            })
            .collect()
    }

    /// Signs with the newest key; about half the signatures go out in their high-S form, as
    /// Stark's do, so that receivers that forget `normalize_s()` fail in tests, not in
    /// production. Returns the base64 signature and whether it is high-S.
    pub(super) fn sign(&mut self, message: &[u8]) -> (String, bool) {
        let low = self.newest().sign(message);
        let low = low.normalize_s().unwrap_or(low);
        if self.high_s.random_bool(0.5) {
            (signature_to_base64(&high_s_twin(&low)), true)
        } else {
            (signature_to_base64(&low), false)
        }
    }
}
