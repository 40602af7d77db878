//! Decide + apply of batches of 8,000 transfers over 1,000,000 accounts, on
//! one core. Criterion prints the throughput as `thrpt: ... Kelem/s` or
//! `Melem/s`, one element being one transfer.
//!
//! `cargo bench -p ledger-reservations`; `BENCH_ACCOUNTS` changes the number
//! of accounts (for a quick run).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ledger_hlc::{NodeId, Stamp};
use ledger_reservations::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

const BATCH: usize = 8_000;
const ACCOUNTS_DEFAULT: u128 = 1_000_000;
const BANK: AccountId = AccountId(u128::MAX);

/// splitmix64: a fixed-seed generator, so every run draws the same transfers.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct Bench {
    ledger: Ledger,
    accounts: u128,
    next_id: u128,
    position: u64,
    now_ns: u64,
    draw: Draw,
    usd: CurrencyCode,
    scratch: Scratch,
    batch: Batch,
}

impl Bench {
    fn stamp(&mut self) -> Stamp {
        self.now_ns += 1_000;
        Stamp::new(self.now_ns, 0, NodeId(1))
    }

    fn new(accounts: u128) -> Self {
        let regions = [RegionId(0), RegionId(1), RegionId(2)];
        let usd = CurrencyCode::new("USD").expect("code");
        let mut bench = Self {
            ledger: Ledger::new(RegionId(0), &regions).expect("layout"),
            accounts,
            next_id: 0,
            position: 0,
            now_ns: 1_700_000_000_000_000_000,
            draw: Draw(42),
            usd,
            scratch: Scratch::default(),
            batch: Batch::default(),
        };
        let kinds = std::iter::once((BANK, AccountKind::External))
            .chain((0..accounts).map(|n| (AccountId(n), AccountKind::User)));
        for (index, (id, kind)) in kinds.enumerate() {
            let stamp = bench.stamp();
            let command = ControlCommand::CreateAccount(NewAccount {
                id,
                currency: usd,
                kind,
                owner: String::new(),
                metadata: Metadata::new(),
            });
            let Ok(Decision::Append(event)) = bench.ledger.decide_control(&command, stamp) else {
                panic!("account {id} is created");
            };
            let position = Position::new(index as u64 + 1, 0);
            bench
                .ledger
                .apply_control(position, &event)
                .expect("applies");
        }
        // Every user starts with 1,000.00 in this region.
        for chunk_start in (0..accounts).step_by(BATCH) {
            let items: Vec<Item> = (chunk_start..(chunk_start + BATCH as u128).min(accounts))
                .map(|n| bench.item(BANK, AccountId(n), 100_000))
                .collect();
            bench.run(&items);
        }
        bench
    }

    fn item(&mut self, debit: AccountId, credit: AccountId, cents: i64) -> Item {
        self.next_id += 1;
        Item::single(Command::Transfer(TransferRequest {
            id: TransferId(self.next_id),
            debit,
            credit,
            amount: Decimal::new(cents, 2),
            currency: self.usd,
            reference: None,
            metadata: Metadata::new(),
        }))
    }

    /// A batch of transfers between random users, as a client would send it.
    fn batch(&mut self) -> Vec<Item> {
        (0..BATCH)
            .map(|_| {
                let debit = u128::from(self.draw.next()) % self.accounts;
                let credit = (debit + 1 + u128::from(self.draw.next()) % (self.accounts - 1))
                    % self.accounts;
                let cents = 1 + (self.draw.next() % 100) as i64;
                self.item(AccountId(debit), AccountId(credit), cents)
            })
            .collect()
    }

    /// Decides the batch and applies its events: the work the core does per batch.
    fn run(&mut self, items: &[Item]) -> usize {
        let stamp = self.stamp();
        let batch = &mut self.batch;
        self.ledger
            .decide_batch_into(items, stamp, &mut self.scratch, batch);
        self.position += 1;
        for (offset, event) in batch.events.iter().enumerate() {
            let position = Position::new(self.position, offset as u32);
            self.ledger
                .apply(RegionId(0), position, event)
                .expect("a decided event applies");
        }
        batch.events.len()
    }
}

fn decide_apply(c: &mut Criterion) {
    let accounts = std::env::var("BENCH_ACCOUNTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(ACCOUNTS_DEFAULT);
    let mut bench = Bench::new(accounts);
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function(
        format!("decide_apply/batch={BATCH}/accounts={accounts}"),
        |b| {
            b.iter_custom(|iterations| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iterations {
                    let items = bench.batch();
                    let start = Instant::now();
                    let applied = bench.run(black_box(&items));
                    elapsed += start.elapsed();
                    assert_eq!(applied, BATCH, "every transfer of the batch applies");
                }
                elapsed
            });
        },
    );
    group.finish();
    println!(
        "transfers kept after the run: {}",
        bench.ledger.home_state().transfer_count()
    );
}

criterion_group!(benches, decide_apply);
criterion_main!(benches);
