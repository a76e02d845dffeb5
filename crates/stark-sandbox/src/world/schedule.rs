//! The queue of lifecycle work due at sandbox instants (payments, credits, deadlines, transfer
//! steps, webhook deliveries), which the scheduler task drains.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use time::OffsetDateTime;

/// Work the scheduler does at a sandbox instant. Each job re-checks the object's state when it
/// runs, so a job made stale by a PATCH or a cancel does nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Job {
    PayInvoice(String),
    CreditInvoice(String),
    /// The payer claws back this many cents of a credited invoice.
    ReverseInvoice(String, i64),
    InvoiceOverdue(String),
    InvoiceExpire(String),
    ProcessTransfer(String),
    SettleTransfer(String),
    Deliver(String),
}

/// A job with its due time; ordered so that the heap pops the earliest (ties: first scheduled).
#[derive(Debug)]
struct Scheduled {
    at: OffsetDateTime,
    seq: u64,
    job: Job,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Jobs by due time; jobs due at the same instant run in the order they were queued, so that a
/// seeded run repeats.
#[derive(Debug, Default)]
pub(super) struct Scheduler {
    heap: BinaryHeap<Scheduled>,
    seq: u64,
}

impl Scheduler {
    /// Queues `job` for sandbox time `at`.
    pub(super) fn push(&mut self, at: OffsetDateTime, job: Job) {
        self.seq += 1;
        self.heap.push(Scheduled {
            at,
            seq: self.seq,
            job,
        });
    }

    /// When the earliest job is due.
    pub(super) fn next_at(&self) -> Option<OffsetDateTime> {
        self.heap.peek().map(|s| s.at)
    }

    /// Takes the earliest job if it is due at `now`.
    pub(super) fn pop_due(&mut self, now: OffsetDateTime) -> Option<Job> {
        if self.heap.peek().is_some_and(|s| s.at <= now) {
            self.heap.pop().map(|s| s.job)
        } else {
            None
        }
    }
}
