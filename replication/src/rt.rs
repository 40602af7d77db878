//! openraft's async runtime: tokio, except for its random numbers (election
//! timeouts, the first heartbeat's jitter), which come from a generator
//! each thread keeps and a simulation seeds. Seeded once, every draw
//! follows from the seed and the order of the draws, so one seed gives one
//! run (`ledger-jepsen`'s whole-cluster simulation runs every node on one
//! thread). Unseeded, a thread's generator is seeded from the OS on its
//! first draw, as tokio's runtime of openraft would be.

use openraft::async_runtime::{Select2, Select3, Select4};
use openraft::{AsyncRuntime, OptionalSend, TokioRuntime};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::time::Duration;

thread_local! {
    static DRAWS: RefCell<Option<SmallRng>> = const { RefCell::new(None) };
}

/// Makes this thread's draws follow from `seed`, from now on. For a
/// simulation only: nodes of one process seeded alike would draw the same
/// election timeouts.
pub fn seed_this_thread(seed: u64) {
    DRAWS.with(|draws| *draws.borrow_mut() = Some(SmallRng::seed_from_u64(seed)));
}

/// The next seed of this thread's sequence.
fn next_seed() -> u64 {
    DRAWS.with(|draws| {
        let mut draws = draws.borrow_mut();
        let draws = draws.get_or_insert_with(|| {
            // Only the election timeouts' spread depends on it: a clock
            // read is enough when the OS gives nothing.
            let seed = getrandom::u64().unwrap_or_else(|_| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_nanos() as u64)
            });
            SmallRng::seed_from_u64(seed)
        });
        draws.next_u64()
    })
}

/// tokio, with seedable draws.
#[derive(Debug)]
pub struct Runtime(TokioRuntime);

type Tokio = TokioRuntime;

impl AsyncRuntime for Runtime {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as AsyncRuntime>::Sleep;
    type Instant = <Tokio as AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = SmallRng;
    type Mpsc = <Tokio as AsyncRuntime>::Mpsc;
    type Watch = <Tokio as AsyncRuntime>::Watch;
    type Oneshot = <Tokio as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::Mutex<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn select2<A, B>(
        a: A,
        b: B,
    ) -> impl Future<Output = Select2<A::Output, B::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
    {
        Tokio::select2(a, b)
    }

    fn select3<A, B, C>(
        a: A,
        b: B,
        c: C,
    ) -> impl Future<Output = Select3<A::Output, B::Output, C::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
        C: Future + OptionalSend,
    {
        Tokio::select3(a, b, c)
    }

    fn select4<A, B, C, D>(
        a: A,
        b: B,
        c: C,
        d: D,
    ) -> impl Future<Output = Select4<A::Output, B::Output, C::Output, D::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
        C: Future + OptionalSend,
        D: Future + OptionalSend,
    {
        Tokio::select4(a, b, c, d)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        SmallRng::seed_from_u64(next_seed())
    }

    fn new(threads: usize) -> Self {
        Self(Tokio::new(threads))
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.0.block_on(future)
    }

    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Tokio::spawn_blocking(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[test]
    fn a_seeded_thread_draws_the_same_sequence_again() {
        let draw = || {
            (0..4)
                .map(|_| Runtime::thread_rng().random_range(0..1_000_000u64))
                .collect::<Vec<_>>()
        };
        seed_this_thread(7);
        let first = draw();
        seed_this_thread(7);
        assert_eq!(draw(), first);
        seed_this_thread(8);
        assert_ne!(draw(), first);
    }
}
