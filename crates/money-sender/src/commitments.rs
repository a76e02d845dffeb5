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

use std::collections::{HashMap, VecDeque};
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
    inner: Mutex<Inner>,
}

/// Pending commitments by key, and released ones in the order of their release.
///
/// Released commitments are kept apart because there are many of them (every payout of the
/// last [`RELEASE_GRACE`], some 26 000 at 1 000× the invoice rate) and a check needs only those
/// released after its balance read: the newest few, summed from the back of the queue. A key
/// committed again, or forgotten, after its release must no longer count as released; each
/// release therefore has a sequence number, and only the one `released` names is live.
#[derive(Debug, Default)]
struct Inner {
    pending: HashMap<PayoutKey, Pending>,
    /// Oldest first; release times never decrease (see [`Inner::release_at`]).
    releases: VecDeque<Release>,
    /// The live release of each key.
    released: HashMap<PayoutKey, Live>,
    next_seq: u64,
}

#[derive(Debug)]
struct Pending {
    cost: i64,
    seen: Instant,
    /// Stark's id of the transfer, once a create's answer or a look showed it.
    transfer_id: Option<String>,
}

/// A key's live release: its sequence number in the queue, and the transfer's id, which a
/// commit of the key again keeps.
#[derive(Debug)]
struct Live {
    seq: u64,
    transfer_id: Option<String>,
}

#[derive(Debug)]
struct Release {
    /// When it was seen past `created`: from then on a balance read shows what it took.
    at: Instant,
    cost: i64,
    key: PayoutKey,
    seq: u64,
}

impl Inner {
    /// Drops what no longer counts at `now`: lapsed commitments, and releases older than
    /// any balance read still being checked.
    fn expire(&mut self, now: Instant) {
        self.pending.retain(|_, c| {
            let ttl = match c.transfer_id {
                Some(_) => COMMITMENT_TTL,
                None => UNFOUND_TTL,
            };
            now.duration_since(c.seen) < ttl
        });
        while let Some(oldest) = self.releases.front() {
            if now.duration_since(oldest.at) < RELEASE_GRACE {
                break;
            }
            if self.is_live(oldest) {
                self.released.remove(&oldest.key);
            }
            self.releases.pop_front();
        }
    }

    /// What a balance read at `read` may still show as not taken, beside `key`'s own: every
    /// pending commitment, and those released after `read`.
    fn committed_for(&self, key: &PayoutKey, read: Instant) -> i64 {
        let pending = self
            .pending
            .iter()
            .filter(|(k, _)| *k != key)
            .fold(0i64, |sum, (_, c)| sum.saturating_add(c.cost));
        self.releases
            .iter()
            .rev()
            .take_while(|r| r.at > read)
            .filter(|r| r.key != *key && self.is_live(r))
            .fold(pending, |sum, r| sum.saturating_add(r.cost))
    }

    fn is_live(&self, release: &Release) -> bool {
        self.released
            .get(&release.key)
            .is_some_and(|live| live.seq == release.seq)
    }

    /// The id of `key`'s transfer, if an answer or a look showed it.
    fn transfer_id(&self, key: &PayoutKey) -> Option<String> {
        match self.pending.get(key) {
            Some(pending) => pending.transfer_id.clone(),
            None => self.released.get(key)?.transfer_id.clone(),
        }
    }

    /// Commits `key` anew: a release before no longer counts for it.
    fn commit(&mut self, key: &PayoutKey, cost: i64, now: Instant, transfer_id: Option<String>) {
        self.released.remove(key);
        self.pending.insert(
            key.clone(),
            Pending {
                cost,
                seen: now,
                transfer_id,
            },
        );
    }

    /// Releases `key` at `now`, or at the latest release so far if that is later: callers
    /// read the clock before taking the lock, and a release dated a little late only counts
    /// for a few more balance reads (it makes payouts wait, never fail).
    fn release_at(&mut self, key: &PayoutKey, now: Instant) {
        let Some(pending) = self.pending.remove(key) else {
            return;
        };
        let at = self.releases.back().map_or(now, |last| last.at.max(now));
        let seq = self.next_seq;
        self.next_seq += 1;
        self.released.insert(
            key.clone(),
            Live {
                seq,
                transfer_id: pending.transfer_id,
            },
        );
        self.releases.push_back(Release {
            at,
            cost: pending.cost,
            key: key.clone(),
            seq,
        });
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
        let mut inner = self.inner.lock().expect("commitments");
        inner.expire(now);
        let committed = inner.committed_for(key, read);
        if balance.saturating_sub(committed) < cost {
            return Err(committed);
        }
        let transfer_id = inner.transfer_id(key);
        inner.commit(key, cost, now, transfer_id);
        Ok(())
    }

    /// Forgets `key`: its transfer was certainly not made.
    pub fn release(&self, key: &PayoutKey) {
        let mut inner = self.inner.lock().expect("commitments");
        inner.pending.remove(key);
        inner.released.remove(key);
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
        let mut inner = self.inner.lock().expect("commitments");
        match transfer.state {
            TransferState::Created | TransferState::Unknown => {
                let cost = transfer.amount.saturating_add(fee);
                inner.commit(key, cost, now, Some(transfer.id.clone()));
            }
            TransferState::Processing
            | TransferState::Success
            | TransferState::Failed
            | TransferState::Canceled => inner.release_at(key, now),
        }
    }

    /// What to look up to bring the commitments up to date: the transfer ids known, and the
    /// payout keys whose transfer id is not.
    pub fn to_recheck(&self) -> (Vec<String>, Vec<PayoutKey>) {
        let inner = self.inner.lock().expect("commitments");
        let mut ids = Vec::new();
        let mut keys = Vec::new();
        for (key, commitment) in &inner.pending {
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
        let inner = self.inner.lock().expect("commitments");
        inner.pending.values().map(|c| c.cost).sum()
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
    fn a_key_committed_again_after_its_release_counts_as_pending_only() {
        let commitments = Commitments::default();
        let start = Instant::now();
        let released = start + Duration::from_secs(1);
        let later = start + Duration::from_secs(2);
        commitments.observe_at(&record("1", TransferState::Created), 100, start);
        commitments.observe_at(&record("1", TransferState::Failed), 100, released);
        // A redelivery retries the failed payout: committed again. A balance read before the
        // release would count the released transfer too, but it is the same key.
        assert_eq!(
            commitments.try_commit_at(&key("1"), 1_000, 1_000, start, later),
            Ok(())
        );
        assert_eq!(
            commitments.try_commit_at(&key("2"), 1_000, 1_999, start, later),
            Err(1_000),
            "counted once, not as pending and released"
        );
        assert_eq!(commitments.to_recheck().0, ["t-1"], "its id is kept");
        commitments.release(&key("1"));
        assert_eq!(
            commitments.try_commit_at(&key("2"), 1_000, 1_000, start, later),
            Ok(()),
            "forgotten: neither pending nor released"
        );
    }

    /// The rule as first written, a scan of every commitment: the structure above must decide
    /// exactly as it does.
    #[derive(Default)]
    struct Reference {
        by_key: HashMap<PayoutKey, (i64, Instant, Option<String>, Option<Instant>)>,
    }

    impl Reference {
        fn try_commit(
            &mut self,
            key: &PayoutKey,
            cost: i64,
            balance: i64,
            read: Instant,
            now: Instant,
        ) -> Result<(), i64> {
            self.by_key
                .retain(|_, (_, seen, id, released)| match released {
                    Some(released) => now.duration_since(*released) < RELEASE_GRACE,
                    None if id.is_some() => now.duration_since(*seen) < COMMITMENT_TTL,
                    None => now.duration_since(*seen) < UNFOUND_TTL,
                });
            let committed: i64 = self
                .by_key
                .iter()
                .filter(|(k, (_, _, _, released))| *k != key && released.is_none_or(|r| r > read))
                .map(|(_, (cost, ..))| cost)
                .sum();
            if balance - committed < cost {
                return Err(committed);
            }
            let id = self.by_key.get(key).and_then(|c| c.2.clone());
            self.by_key.insert(key.clone(), (cost, now, id, None));
            Ok(())
        }

        fn observe(&mut self, transfer: &TransferRecord, fee: i64, now: Instant) {
            let key = transfer.key.clone().expect("tagged");
            if transfer.state == TransferState::Created {
                let id = Some(transfer.id.clone());
                self.by_key
                    .insert(key, (transfer.amount + fee, now, id, None));
            } else if let Some(c) = self.by_key.get_mut(&key) {
                c.3.get_or_insert(now);
            }
        }
    }

    #[test]
    fn decides_as_a_scan_of_every_commitment_would() {
        use rand::{RngExt as _, SeedableRng as _};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
        let commitments = Commitments::default();
        let mut reference = Reference::default();
        let start = Instant::now();
        let mut now = start;
        let states = [
            TransferState::Created,
            TransferState::Processing,
            TransferState::Success,
            TransferState::Failed,
        ];
        for step in 0..20_000 {
            now += Duration::from_millis(rng.random_range(0..400));
            let invoice = rng.random_range(0..300u32).to_string();
            match rng.random_range(0..10) {
                0..4 => {
                    let read = now - Duration::from_millis(rng.random_range(0..2_000));
                    let read = read.max(start);
                    let balance = rng.random_range(0..40_000);
                    let cost = rng.random_range(100..3_000);
                    assert_eq!(
                        commitments.try_commit_at(&key(&invoice), cost, balance, read, now),
                        reference.try_commit(&key(&invoice), cost, balance, read, now),
                        "step {step}"
                    );
                }
                4 => {
                    commitments.release(&key(&invoice));
                    reference.by_key.remove(&key(&invoice));
                }
                _ => {
                    let state = states[rng.random_range(0..states.len())];
                    let transfer = record(&invoice, state);
                    commitments.observe_at(&transfer, 100, now);
                    reference.observe(&transfer, 100, now);
                }
            }
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
