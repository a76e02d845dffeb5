//! A slot's batch: the invoice requests that one hour of the campaign publishes.
//!
//! [`batch`] is a pure function of the configuration and the slot number. That is the whole
//! idempotency story of the spammer: Cloud Run retries a failed task, Cloud Scheduler may fire
//! twice, an operator may rerun a slot, and every one of those runs publishes the very same
//! requests, which the invoice sender deduplicates by request tag.
//!
//! Determinism rests on three things, each pinned by a test:
//! - the seed comes from [`slot_seed`], a hash written out here (std's `DefaultHasher` is
//!   explicitly allowed to change between Rust releases);
//! - the generator is ChaCha20, whose output for a seed is fixed by its specification, and the
//!   draws happen in a fixed order;
//! - request ids do not depend on the generator at all (see [`request_id`]), so even a
//!   dependency upgrade that changed the names or amounts drawn (`fake`'s word lists,
//!   `rand`'s sampling) could not make a retry create a second invoice for the same request.

use fake::Fake as _;
use fake::faker::name::raw::Name;
use fake::locales::PT_BR;
use pipeline_domain::messages::{PendingInvoice, SCHEMA_VERSION};
use pipeline_domain::taxid::TaxId;
use pipeline_domain::vocab::invoice_tags;
use rand::{RngExt as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use time::Duration;
use time::macros::format_description;

use crate::config::SpammerConfig;

/// Fewest invoices in a slot.
pub const MIN_BATCH: usize = 8;
/// Most invoices in a slot.
pub const MAX_BATCH: usize = 12;

/// Domain separator hashed into every seed. Bump it only to deliberately change every batch of
/// every campaign (e.g. a new generation scheme), never by accident.
const SEED_DOMAIN: &str = "invoice-spammer/v1";

/// The 32-byte ChaCha20 seed of `(campaign, slot)`.
///
/// Four 64-bit FNV-1a lanes over `"invoice-spammer/v1|<campaign>|<slot>"`, each lane prefixed
/// with its index so that the lanes differ. FNV is not a strong hash, and it does not need to
/// be: nothing here is secret, the seed only has to be stable forever and distinct for distinct
/// inputs (the input is unambiguous because campaign ids cannot contain `|`), and ChaCha20 turns
/// any two distinct keys into unrelated streams. Written out so that it needs no extra
/// dependency and cannot change under us.
pub fn slot_seed(campaign: &str, slot: u32) -> [u8; 32] {
    let input = format!("{SEED_DOMAIN}|{campaign}|{slot}");
    let mut seed = [0u8; 32];
    for (lane, chunk) in seed.chunks_exact_mut(8).enumerate() {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a 64 offset basis
        for byte in std::iter::once(lane as u8).chain(input.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3); // FNV-1a 64 prime
        }
        chunk.copy_from_slice(&hash.to_le_bytes());
    }
    seed
}

/// The deterministic id of invoice `index` of `slot`: `<campaign>-<slot>-<index>`.
///
/// Readable in logs and in Stark's dashboard (as the `request:<id>` tag), a valid lowercase tag
/// component because campaign ids are validated, and unambiguous: slot and index are the last
/// two `-`-separated fields and are plain numbers, so no two (campaign, slot, index) triples
/// share an id. It deliberately ignores the generator (see the module doc).
pub fn request_id(campaign: &str, slot: u32, index: usize) -> String {
    format!("{campaign}-{slot}-{index}")
}

/// The invoice requests of `slot`. Same configuration and slot → identical output, always.
///
/// Draw order (changing it changes every batch): count, then for each invoice the name, the
/// nine CPF base digits (redrawn while all equal), the amount. The drawn count (8 to 12) is
/// multiplied by [`SpammerConfig::rate_multiplier`]; since the draws per invoice come after it,
/// a multiplied batch begins with exactly the invoices of the plain one.
pub fn batch(config: &SpammerConfig, slot: u32) -> Vec<PendingInvoice> {
    let mut rng = ChaCha20Rng::from_seed(slot_seed(&config.campaign, slot));
    let count = rng.random_range(MIN_BATCH..=MAX_BATCH) * config.rate_multiplier.max(1) as usize;
    let due = config.due_after_hours.map(|hours| {
        let slot_start = config.start + Duration::hours(i64::from(slot));
        format_due(slot_start + Duration::hours(i64::from(hours)))
    });
    (0..count)
        .map(|index| {
            let name: String = Name(PT_BR).fake_with_rng(&mut rng);
            let tax_id = random_cpf(&mut rng).to_string();
            let amount = rng.random_range(config.amount_cents.clone());
            let request_id = request_id(&config.campaign, slot, index);
            let tags = invoice_tags(&request_id, &config.campaign, slot);
            PendingInvoice {
                schema_version: SCHEMA_VERSION,
                request_id,
                campaign: config.campaign.clone(),
                slot,
                amount,
                name,
                tax_id,
                due: due.clone(),
                expiration: config.expiration_seconds,
                tags,
            }
        })
        .collect()
}

/// A valid CPF: nine random base digits plus their check digits. All-equal bases
/// (`111.111.111-11`) pass the arithmetic but Stark refuses them, so they are redrawn.
fn random_cpf(rng: &mut ChaCha20Rng) -> TaxId {
    loop {
        let mut base = [0u8; 9];
        for digit in &mut base {
            *digit = rng.random_range(0..=9u8);
        }
        if base.iter().any(|d| *d != base[0]) {
            return TaxId::cpf_from_base(base);
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS+00:00` in UTC, the datetime shape Stark documents for `due`.
fn format_due(at: time::OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]+00:00"
        ))
        .expect("a UTC datetime within the year 9999 always formats")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_is_pinned() {
        // If this changes, every retry across the deploy would publish a different batch.
        let seed = slot_seed("demo", 0);
        assert_ne!(seed, slot_seed("demo", 1));
        assert_ne!(seed, slot_seed("demo0", 0));
        assert_ne!(seed[..8], seed[8..16]);
        assert_eq!(
            seed.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            PINNED_SEED_DEMO_0
        );
    }

    /// Computed independently (Python, FNV-1a 64 as specified) to check the implementation.
    const PINNED_SEED_DEMO_0: &str =
        "f7de05e4728044c972ea5a3f568ac9372df1dc7bcec5a09218b80ddbb2b4e68c";

    #[test]
    fn request_ids_are_unambiguous() {
        assert_eq!(request_id("a-1", 2, 3), "a-1-2-3");
        assert_ne!(request_id("a-1", 2, 3), request_id("a", 12, 3));
        assert_ne!(request_id("a", 1, 23), request_id("a", 12, 3));
    }

    #[test]
    fn due_is_utc_without_fraction() {
        let at = time::macros::datetime!(2025-03-01 21:30:15.25 -03:00);
        assert_eq!(format_due(at), "2025-03-02T00:30:15+00:00");
    }
}
