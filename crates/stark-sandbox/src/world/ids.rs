//! Ids and the other random tokens the sandbox makes up (hex tokens, payer accounts, ledger
//! transaction ids), all from one seeded stream so that a run repeats.

use std::collections::HashSet;

use rand::RngExt as _;
use rand_chacha::ChaCha8Rng;

use crate::faults::stream;

/// The seeded source of every id, remembering the ids handed out so that none repeats.
#[derive(Debug)]
pub(super) struct Ids {
    rng: ChaCha8Rng,
    /// As numbers: one is made for every row, so a second copy of each as text cost more than
    /// the row's own id (about 50 bytes per id).
    used: HashSet<u64>,
}

impl Ids {
    /// Stream 1 of the behaviour seed (2 decides payments, 3 high-S signatures).
    pub(super) fn new(seed: u64) -> Self {
        Self {
            rng: stream(seed, 1),
            used: HashSet::new(),
        }
    }

    /// A fresh 16-digit id, unique in this sandbox, as Stark's ids are.
    pub(super) fn next_id(&mut self) -> String {
        loop {
            let id = self
                .rng
                .random_range(1_000_000_000_000_000u64..10_000_000_000_000_000);
            if self.used.insert(id) {
                return id.to_string();
            }
        }
    }

    /// 32 hex digits, as in Stark's invoice pdf/link/brcode URLs.
    pub(super) fn hex32(&mut self) -> String {
        format!("{:032x}", self.rng.random::<u128>())
    }

    /// `n` random decimal digits.
    pub(super) fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.rng.random_range(0..10u8)))
            .collect()
    }

    /// One of `choices`, uniformly.
    pub(super) fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
        choices[self.rng.random_range(0..choices.len())]
    }

    /// `n` random lowercase letters and digits (the tail of a Pix end-to-end id).
    pub(super) fn alphanumeric(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| char::from(ALPHABET[self.rng.random_range(0..ALPHABET.len())]))
            .collect()
    }

    /// A 32-digit ledger transaction id (the 2024 sandbox shape).
    pub(super) fn transaction_id(&mut self) -> String {
        let mut id = self.digits(32);
        id.replace_range(0..1, "4");
        id
    }
}
