//! Money this instance has committed to payout transfers that Stark has not debited yet.
//!
//! Stark checks and debits a transfer's amount when it processes the transfer, after it sat
//! `created` for a while; until then `GET /v2/balance` still shows the money the transfer will
//! take. Payouts that each check that balance would all see it cover them, and every transfer
//! beyond it would fail at processing, using up one of its invoice's payout generations: at
//! 100× the invoice rate, with reversals draining the balance, a few invoices lost all three
//! and were dead-lettered. So the balance check subtracts what is committed here: the transfers
//! this instance made, or saw `created`, and has not seen in another state since.
//!
//! Seeing a transfer `processing` (debited, or failing) or final releases it. A commitment may
//! never be seen again here (its redelivery went to another instance; its invoice was reversed
//! and acked without a look at its transfers), so when only commitments keep a payout from
//! the balance, money-sender looks their transfers up ([`Commitments::to_recheck`]: by id,
//! or by payout key when a create's answer was lost) before it waits. One whose transfer no
//! look has shown lapses after [`UNFOUND_TTL`], any other after [`COMMITMENT_TTL`] without
//! being seen. Until released, a commitment only makes payouts wait, never makes one fail;
//! counting a transfer Stark has already debited is harmless the same way.
//!
//! Per instance: what another instance committed and this one never saw is not counted, so two
//! instances can still overlap within Stark's `created` window (the README says so).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pipeline_domain::audit::{TransferRecord, TransferState};
use pipeline_domain::vocab::PayoutKey;

/// How long a commitment lasts without being seen again: far longer than Stark takes to start
/// processing a transfer, short enough that a forgotten one delays payouts only for a while.
pub const COMMITMENT_TTL: Duration = Duration::from_secs(10 * 60);

/// How long a commitment lasts whose transfer no answer or look has shown: a create whose
/// answer was lost may not have been applied at all (then nothing will ever show it, and its
/// invoice may be acked without another create, e.g. once reversed), and one that was applied
/// shows in Stark's lists well within this.
pub const UNFOUND_TTL: Duration = Duration::from_secs(60);

/// How long a released commitment still counts for balances read before its release (a
/// balance read while Stark had not debited the transfer yet still shows its money): longer
/// than any balance request takes.
const RELEASE_GRACE: Duration = Duration::from_secs(60);

/// The committed transfers, by payout key, with their cost (amount plus transfer fee).
#[derive(Debug, Default)]
pub struct Commitments {
    by_key: Mutex<HashMap<PayoutKey, Commitment>>,
}

#[derive(Debug, Clone)]
struct Commitment {
    cost: i64,
    seen: Instant,
    /// Stark's id of the transfer, once a create's answer or a look showed it.
    transfer_id: Option<String>,
    /// When it was seen past `created`: from then on a balance read shows what it took.
    released: Option<Instant>,
}

impl Commitment {
    /// Whether a balance read at `read` may still show the money this transfer takes.
    fn counts_for(&self, read: Instant) -> bool {
        self.released.is_none_or(|released| released > read)
    }
}

impl Commitments {
    /// Commits `cost` under `key` if `balance` (as read from Stark at `read`, when the request
    /// was sent), less everything else committed at that time, covers it; otherwise returns
    /// what is committed. The check and the commit are one step, so two payouts cannot both
    /// count the same money; and a transfer released after `read` still counts, since the
    /// balance may have been read before Stark debited it.
    pub fn try_commit(
        &self,
        key: &PayoutKey,
        cost: i64,
        balance: i64,
        read: Instant,
    ) -> Result<(), i64> {
        self.try_commit_at(key, cost, balance, read, Instant::now())
    }

    fn try_commit_at(
        &self,
        key: &PayoutKey,
        cost: i64,
        balance: i64,
        read: Instant,
        now: Instant,
    ) -> Result<(), i64> {
        let mut by_key = self.by_key.lock().expect("commitments");
        by_key.retain(|_, c| match c.released {
            Some(released) => now.duration_since(released) < RELEASE_GRACE,
            None if c.transfer_id.is_some() => now.duration_since(c.seen) < COMMITMENT_TTL,
            None => now.duration_since(c.seen) < UNFOUND_TTL,
        });
        let committed = by_key
            .iter()
            .filter(|(k, c)| *k != key && c.counts_for(read))
            .fold(0i64, |sum, (_, c)| sum.saturating_add(c.cost));
        if balance.saturating_sub(committed) < cost {
            return Err(committed);
        }
        let transfer_id = by_key.get(key).and_then(|c| c.transfer_id.clone());
        by_key.insert(
            key.clone(),
            Commitment {
                cost,
                seen: now,
                transfer_id,
                released: None,
            },
        );
        Ok(())
    }

    /// Forgets `key`: its transfer was certainly not made.
    pub fn release(&self, key: &PayoutKey) {
        self.by_key.lock().expect("commitments").remove(key);
    }

    /// Updates from `transfer` as Stark showed it: committed (for its amount plus `fee`)
    /// while it may still take money without having done so, released otherwise.
    pub fn observe(&self, transfer: &TransferRecord, fee: i64) {
        self.observe_at(transfer, fee, Instant::now());
    }

    fn observe_at(&self, transfer: &TransferRecord, fee: i64, now: Instant) {
        let Some(key) = &transfer.key else {
            return;
        };
        let mut by_key = self.by_key.lock().expect("commitments");
        match transfer.state {
            TransferState::Created | TransferState::Unknown => {
                let cost = transfer.amount.saturating_add(fee);
                by_key.insert(
                    key.clone(),
                    Commitment {
                        cost,
                        seen: now,
                        transfer_id: Some(transfer.id.clone()),
                        released: None,
                    },
                );
            }
            TransferState::Processing
            | TransferState::Success
            | TransferState::Failed
            | TransferState::Canceled => {
                if let Some(commitment) = by_key.get_mut(key) {
                    commitment.released.get_or_insert(now);
                }
            }
        }
    }

    /// What to look up to bring the commitments up to date: the transfer ids known, and the
    /// payout keys whose transfer id is not.
    pub fn to_recheck(&self) -> (Vec<String>, Vec<PayoutKey>) {
        let by_key = self.by_key.lock().expect("commitments");
        let mut ids = Vec::new();
        let mut keys = Vec::new();
        for (key, commitment) in by_key.iter().filter(|(_, c)| c.released.is_none()) {
            match &commitment.transfer_id {
                Some(id) => ids.push(id.clone()),
                None => keys.push(key.clone()),
            }
        }
        (ids, keys)
    }

    /// The total committed now.
    #[cfg(test)]
    fn total(&self) -> i64 {
        self.by_key
            .lock()
            .expect("commitments")
            .values()
            .filter(|c| c.released.is_none())
            .map(|c| c.cost)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_domain::receiver::Account;

    fn key(invoice: &str) -> PayoutKey {
        PayoutKey::for_invoice(invoice)
    }

    fn record(invoice: &str, state: TransferState) -> TransferRecord {
        TransferRecord {
            id: format!("t-{invoice}"),
            key: Some(key(invoice)),
            amount: 900,
            state,
            account: Account::default(),
        }
    }

    #[test]
    fn a_balance_covers_each_commitment_once() {
        let commitments = Commitments::default();
        assert_eq!(
            commitments.try_commit(&key("1"), 1_000, 1_500, Instant::now()),
            Ok(())
        );
        assert_eq!(
            commitments.try_commit(&key("2"), 1_000, 1_500, Instant::now()),
            Err(1_000)
        );
        // The same key again (a redelivery that retries its own create) does not count itself.
        assert_eq!(
            commitments.try_commit(&key("1"), 1_000, 1_500, Instant::now()),
            Ok(())
        );
        assert_eq!(commitments.total(), 1_000);
        commitments.release(&key("1"));
        assert_eq!(
            commitments.try_commit(&key("2"), 1_000, 1_500, Instant::now()),
            Ok(())
        );
    }

    #[test]
    fn a_release_counts_only_for_balances_read_after_it() {
        let commitments = Commitments::default();
        let before = Instant::now();
        commitments.observe(&record("1", TransferState::Created), 100);
        commitments.observe(&record("1", TransferState::Processing), 100);
        let after = Instant::now();
        // Read before the release, the balance may still show the 1 000 the transfer takes.
        assert_eq!(
            commitments.try_commit_at(&key("2"), 1_000, 1_500, before, after),
            Err(1_000)
        );
        assert_eq!(
            commitments.try_commit_at(&key("2"), 1_000, 1_500, after, after),
            Ok(())
        );
        assert_eq!(commitments.to_recheck().0, Vec::<String>::new(), "released");
    }

    #[test]
    fn a_commitment_whose_transfer_never_showed_lapses_sooner() {
        let commitments = Commitments::default();
        let start = Instant::now();
        // A create whose answer was lost, and a transfer seen `created`.
        assert_eq!(
            commitments.try_commit_at(&key("1"), 1_000, 3_000, start, start),
            Ok(())
        );
        commitments.observe_at(&record("2", TransferState::Created), 100, start);
        let almost = start + UNFOUND_TTL - Duration::from_secs(1);
        assert_eq!(
            commitments.try_commit_at(&key("3"), 1_000, 2_999, almost, almost),
            Err(2_000)
        );
        commitments.release(&key("3"));
        let unfound = start + UNFOUND_TTL;
        assert_eq!(
            commitments.try_commit_at(&key("3"), 1_000, 2_000, unfound, unfound),
            Ok(()),
            "the unseen one lapsed, the seen one still counts"
        );
        assert_eq!(commitments.total(), 2_000);
    }

    #[test]
    fn a_commitment_never_seen_again_lapses() {
        let commitments = Commitments::default();
        let start = Instant::now();
        commitments.observe_at(&record("1", TransferState::Created), 100, start);
        let almost = start + COMMITMENT_TTL - Duration::from_secs(1);
        assert_eq!(
            commitments.try_commit_at(&key("2"), 1_000, 1_500, almost, almost),
            Err(1_000)
        );
        let lapsed = start + COMMITMENT_TTL;
        assert_eq!(
            commitments.try_commit_at(&key("2"), 1_000, 1_500, lapsed, lapsed),
            Ok(())
        );
        assert_eq!(commitments.total(), 1_000, "only the new one is left");
        assert_eq!(
            commitments.to_recheck(),
            (Vec::new(), vec![key("2")]),
            "no id before a create's answer: looked up by its key"
        );
    }

    #[test]
    fn a_transfer_is_committed_until_seen_past_created() {
        let commitments = Commitments::default();
        commitments.observe(&record("1", TransferState::Created), 100);
        assert_eq!(commitments.total(), 1_000, "seen created: amount plus fee");
        commitments.observe(&record("1", TransferState::Unknown), 100);
        assert_eq!(
            commitments.total(),
            1_000,
            "a status we do not know may still take money"
        );
        for done in [
            TransferState::Processing,
            TransferState::Success,
            TransferState::Failed,
            TransferState::Canceled,
        ] {
            commitments.observe(&record("1", TransferState::Created), 100);
            commitments.observe(&record("1", done), 100);
            assert_eq!(commitments.total(), 0, "{done:?} releases it");
        }
        commitments.observe(&record("3", TransferState::Created), 100);
        let ids = |c: &Commitments| c.to_recheck().0;
        assert_eq!(ids(&commitments), ["t-3"], "seen: its id is known");
        assert_eq!(
            commitments.try_commit(&key("3"), 1_000, 5_000, Instant::now()),
            Ok(())
        );
        assert_eq!(ids(&commitments), ["t-3"], "a retried commit keeps the id");
        commitments.release(&key("3"));
        let mut untagged = record("2", TransferState::Created);
        untagged.key = None;
        commitments.observe(&untagged, 100);
        assert_eq!(commitments.total(), 0, "not a payout of ours");
    }
}
