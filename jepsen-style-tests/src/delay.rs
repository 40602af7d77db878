//! `jepsen delay`: latency made in user space, for a kernel without the
//! `netem` qdisc. The harness runs it inside a host's namespace, bound to
//! an NFQUEUE number; an iptables rule in that namespace sends the packets
//! to delay into the queue (`-j NFQUEUE`), and the delayer gives each its
//! verdict (accept) once it has been held `delay ± jitter`.
//!
//! Packets leave in the order they came: a packet is never let go before
//! an earlier one of the same queue ([`Pacer`]), so TCP sees latency and no
//! reordering. The queue fails closed: no `--queue-bypass`, no fail-open,
//! so while no delayer is bound (it died, or has not started) the kernel
//! drops what the rule sends there rather than passing it undelayed, and
//! the packets held when a delayer dies are dropped with its socket.
//!
//! The netlink side is the `nfq` crate (netlink only, no
//! `libnetfilter_queue`); it has no file descriptor to poll on, so while
//! packets are held the delayer asks without blocking and sleeps at most
//! [`POLL_MAX`] between asks, and blocks only while it holds nothing.

use crate::rng::Rng;
use anyhow::Context;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

/// The most packets the kernel keeps waiting for a verdict of one queue;
/// past it the kernel drops (fails closed). At 100 ms the nodes' traffic
/// holds a few hundred at most.
pub const QUEUE_LENGTH_MAX: u32 = 4096;
/// The longest the delayer sleeps between asks while it holds packets: a
/// packet may be let go this much late, and may wait this much before it
/// is seen (both within the jitter).
pub const POLL_MAX: Duration = Duration::from_millis(1);

/// When each packet is let go: `delay ± jitter` after it came, and never
/// before the one that came before it. Time is a parameter (microseconds
/// since the delayer began), the jitter the seed's.
pub struct Pacer {
    delay_us: u64,
    jitter_us: u64,
    last_release_us: u64,
    rng: Rng,
}

impl Pacer {
    /// A jitter larger than the delay is cut to the delay (no packet goes
    /// out before it came).
    pub fn new(delay: Duration, jitter: Duration, seed: u64) -> Self {
        let delay_us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        let jitter_us = u64::try_from(jitter.as_micros())
            .unwrap_or(u64::MAX)
            .min(delay_us);
        Self {
            delay_us,
            jitter_us,
            last_release_us: 0,
            rng: Rng::new(seed),
        }
    }

    /// When a packet that came at `arrived_us` is let go: at
    /// `arrived_us + delay + j`, `j` drawn in `-jitter..=jitter`, or when
    /// the packet before it is let go, whichever is later.
    pub fn release_at_us(&mut self, arrived_us: u64) -> u64 {
        let span = self.jitter_us.saturating_mul(2).saturating_add(1);
        let wanted = arrived_us
            .saturating_add(self.delay_us)
            .saturating_add(self.rng.below(span))
            .saturating_sub(self.jitter_us);
        self.last_release_us = wanted.max(self.last_release_us);
        self.last_release_us
    }
}

/// What one delayer does.
#[derive(Debug, Clone)]
pub struct Settings {
    pub queue: u16,
    pub delay: Duration,
    pub jitter: Duration,
    pub seed: u64,
    /// Exit when standard input closes (the harness holds it open): a
    /// harness killed with SIGKILL leaves no delayer behind.
    pub exit_on_stdin_close: bool,
}

/// Binds the queue, prints `bound queue N`, then delays every packet the
/// queue gets until killed (or its standard input closes). Fails when the
/// queue cannot be bound (not root, no `nfnetlink_queue` in the kernel,
/// another process bound to it).
pub fn run(settings: &Settings) -> anyhow::Result<()> {
    let number = settings.queue;
    let mut queue = nfq::Queue::open().context("opening a netfilter queue socket (as root?)")?;
    queue
        .bind(number)
        .with_context(|| format!("binding NFQUEUE {number} (is nfnetlink_queue loaded?)"))?;
    // The verdict needs only the packet's id: copy no payload.
    queue.set_copy_range(number, 0)?;
    queue.set_queue_max_len(number, QUEUE_LENGTH_MAX)?;
    queue.set_fail_open(number, false)?;
    if settings.exit_on_stdin_close {
        std::thread::spawn(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            std::process::exit(0);
        });
    }
    println!("bound queue {number}");
    let began = Instant::now();
    let now_us = || u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
    let mut pacer = Pacer::new(settings.delay, settings.jitter, settings.seed);
    let mut held: VecDeque<(u64, nfq::Message)> = VecDeque::new();
    loop {
        while held.front().is_some_and(|(at, _)| *at <= now_us()) {
            if let Some((_, message)) = held.pop_front() {
                queue.verdict(message).context("giving a verdict")?;
            }
        }
        // Block only while nothing is held: nothing is due then.
        queue.set_nonblocking(!held.is_empty());
        match queue.recv() {
            Ok(mut message) => {
                message.set_verdict(nfq::Verdict::Accept);
                held.push_back((pacer.release_at_us(now_us()), message));
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                let next_us = held.front().map_or(0, |(at, _)| *at);
                let wait = Duration::from_micros(next_us.saturating_sub(now_us()));
                std::thread::sleep(wait.min(POLL_MAX));
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error).context("reading the queue"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Pacer;
    use std::time::Duration;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn without_jitter_every_packet_waits_the_delay() {
        let mut pacer = Pacer::new(ms(100), ms(0), 1);
        assert_eq!(pacer.release_at_us(0), 100_000);
        assert_eq!(pacer.release_at_us(5_000), 105_000);
        assert_eq!(pacer.release_at_us(250_000), 350_000);
    }

    #[test]
    fn the_jitter_stays_within_its_bounds_and_uses_them() {
        let mut pacer = Pacer::new(ms(100), ms(20), 7);
        let mut waits = Vec::new();
        for packet in 0..2_000u64 {
            // A second apart: no packet waits for the one before.
            let arrived = packet * 1_000_000;
            waits.push(pacer.release_at_us(arrived) - arrived);
        }
        assert!(waits.iter().all(|wait| (80_000..=120_000).contains(wait)));
        assert!(waits.iter().any(|wait| *wait < 85_000));
        assert!(waits.iter().any(|wait| *wait > 115_000));
    }

    #[test]
    fn a_packet_never_leaves_before_the_one_before_it() {
        let mut pacer = Pacer::new(ms(100), ms(50), 3);
        let mut last = 0;
        for packet in 0..5_000u64 {
            let arrived = packet * 100;
            let at = pacer.release_at_us(arrived);
            assert!(at >= last, "packet {packet} at {at} before {last}");
            assert!(at >= arrived + 50_000);
            last = at;
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_releases() {
        let releases = |seed| {
            let mut pacer = Pacer::new(ms(100), ms(20), seed);
            (0..50u64)
                .map(|packet| pacer.release_at_us(packet * 30_000))
                .collect::<Vec<_>>()
        };
        assert_eq!(releases(5), releases(5));
        assert_ne!(releases(5), releases(6));
    }

    #[test]
    fn a_jitter_larger_than_the_delay_never_sends_a_packet_early() {
        let mut pacer = Pacer::new(ms(10), ms(50), 9);
        for packet in 0..1_000u64 {
            let arrived = packet * 1_000_000;
            let wait = pacer.release_at_us(arrived) - arrived;
            assert!(wait <= 20_000);
        }
    }
}
