//! How many actors are alive and how many messages wait for them, read by
//! the metrics at each scrape: the router's and the writer's mailboxes
//! (the commands they have been sent and not yet taken up), the account
//! actors, counted by the router at each sweep, and the sagas, counted by
//! their supervisor as they start and end.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The commands sent to one actor and not yet taken up.
pub(crate) struct Mailbox(AtomicI64);

impl Mailbox {
    const fn new() -> Self {
        Self(AtomicI64::new(0))
    }

    /// Sends with `send`, counting the message while it waits.
    pub(crate) fn send<E>(&self, send: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        self.0.fetch_add(1, Ordering::Relaxed);
        send().inspect_err(|_| {
            self.0.fetch_sub(1, Ordering::Relaxed);
        })
    }

    /// Its actor took a message up (never counted below zero).
    pub(crate) fn taken(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some((n - 1).max(0))
            });
    }

    /// A new actor's mailbox is empty: what its predecessor left was dropped.
    pub(crate) fn emptied(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    fn depth(&self) -> u64 {
        u64::try_from(self.0.load(Ordering::Relaxed)).unwrap_or(0)
    }
}

pub(crate) static ROUTER: Mailbox = Mailbox::new();
pub(crate) static WRITER: Mailbox = Mailbox::new();

/// The account actors at the router's last sweep.
static ACCOUNTS_ALIVE: AtomicU64 = AtomicU64::new(0);
static ACCOUNTS_QUEUED: AtomicU64 = AtomicU64::new(0);
static ACCOUNTS_DEEPEST: AtomicU64 = AtomicU64::new(0);

/// The router's count of its account actors: how many are alive, the
/// commands waiting in all their mailboxes, and in the fullest one.
pub(crate) fn accounts_counted(alive: usize, queued: usize, deepest: usize) {
    ACCOUNTS_ALIVE.store(count(alive), Ordering::Relaxed);
    ACCOUNTS_QUEUED.store(count(queued), Ordering::Relaxed);
    ACCOUNTS_DEEPEST.store(count(deepest), Ordering::Relaxed);
}

/// Sagas running, by kind, as their supervisor last counted them.
static WITHDRAWAL_SAGAS: AtomicU64 = AtomicU64::new(0);
static PULL_SAGAS: AtomicU64 = AtomicU64::new(0);

/// The saga supervisor's count of the sagas it runs.
pub(crate) fn sagas_counted(withdrawals: usize, pulls: usize) {
    WITHDRAWAL_SAGAS.store(count(withdrawals), Ordering::Relaxed);
    PULL_SAGAS.store(count(pulls), Ordering::Relaxed);
}

fn count(value: usize) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

/// The figures at this moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    pub router_queued: u64,
    pub writer_queued: u64,
    pub accounts_alive: u64,
    pub accounts_queued: u64,
    pub account_deepest: u64,
    pub withdrawal_sagas: u64,
    pub pull_sagas: u64,
}

pub fn read() -> Census {
    Census {
        router_queued: ROUTER.depth(),
        writer_queued: WRITER.depth(),
        accounts_alive: ACCOUNTS_ALIVE.load(Ordering::Relaxed),
        accounts_queued: ACCOUNTS_QUEUED.load(Ordering::Relaxed),
        account_deepest: ACCOUNTS_DEEPEST.load(Ordering::Relaxed),
        withdrawal_sagas: WITHDRAWAL_SAGAS.load(Ordering::Relaxed),
        pull_sagas: PULL_SAGAS.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailbox_counts_what_waits_and_forgets_a_failed_send() {
        let mailbox = Mailbox::new();
        assert_eq!(mailbox.send(|| Ok::<(), ()>(())), Ok(()));
        assert_eq!(mailbox.send(|| Ok::<(), ()>(())), Ok(()));
        assert_eq!(mailbox.send(|| Err::<(), ()>(())), Err(()));
        assert_eq!(mailbox.depth(), 2);
        mailbox.taken();
        assert_eq!(mailbox.depth(), 1);
        mailbox.emptied();
        assert_eq!(mailbox.depth(), 0);
        // Taken up with nothing counted: never below zero, nor later short.
        mailbox.taken();
        assert_eq!(mailbox.send(|| Ok::<(), ()>(())), Ok(()));
        assert_eq!(mailbox.depth(), 1);
    }
}
