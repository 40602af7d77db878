//! The latency nemesis's machinery, measured: delayers on NFQUEUE in the
//! hosts' namespaces, rules that send them what crosses between "regions",
//! connections timed from inside the hosts. Needs root, like `net.rs`.

use ledger_jepsen::net::{Network, Rule};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

const PORT: u16 = 9000;
/// Held each way; a connection (SYN out, SYN-ACK back) is held twice.
const DELAY: Duration = Duration::from_millis(100);
const JITTER: Duration = Duration::from_millis(10);
/// What a loaded machine may add to a connection on top of its holds.
const SLACK: Duration = Duration::from_millis(800);

fn probe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_jepsen"))
}

/// A listener inside `host` for the rest of the test.
fn listen(net: &Network, host: usize) -> Child {
    net.listener(host, PORT, 60).expect("the listener starts")
}

/// How long connections from `from` to `to` took to open, five of them.
fn connects(net: &Network, from: usize, to: usize) -> Vec<Duration> {
    let addr = SocketAddr::from((net.address(to), PORT));
    (0..5)
        .map(|_| {
            net.connect_time(from, addr, Duration::from_secs(2))
                .expect("the probe runs")
                .unwrap_or(Duration::MAX)
        })
        .collect()
}

fn all_within(times: &[Duration], least: Duration, most: Duration) -> bool {
    times.iter().all(|time| (least..=most).contains(time))
}

#[test]
fn packets_between_regions_are_held_each_way_and_nothing_else_is() {
    // Hosts 0 and 2 are one region, host 1 another.
    let net = Network::create(3, probe()).expect("namespaces can be made here (as root)");
    let mut listeners: Vec<Child> = (0..3).map(|host| listen(&net, host)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let fast = DELAY - JITTER;
    assert!(all_within(&connects(&net, 0, 1), Duration::ZERO, fast));

    let mut delayers: Vec<_> = (0..3)
        .map(|host| {
            net.delayer(host, DELAY, JITTER, 7)
                .expect("the delayer binds")
        })
        .collect();
    let between = [(0, 1), (2, 1), (1, 0), (1, 2)];
    let rules: Vec<Rule> = between
        .iter()
        .map(|&(from, to)| Rule::Delay { from, to })
        .collect();
    net.set(&rules).expect("rules");

    let across = connects(&net, 0, 1);
    let least = (DELAY - JITTER) * 2;
    let most = (DELAY + JITTER) * 2 + SLACK;
    println!("under {DELAY:?} ± {JITTER:?}: host 0 to host 1 {across:?}");
    assert!(all_within(&across, least, most), "{across:?}");
    assert!(all_within(&connects(&net, 1, 2), least, most));
    let within = connects(&net, 0, 2);
    println!("within a region: {within:?}");
    assert!(all_within(&within, Duration::ZERO, fast), "{within:?}");
    let client = net
        .client_connect_time(SocketAddr::from((net.address(1), PORT)), most)
        .expect("connect");
    assert!(client.is_some_and(|time| time < fast), "{client:?}");

    // Fail closed: with host 0's delayer killed, what host 0 sends host 1
    // is dropped, not sent on undelayed, and the harness can tell.
    let mut gone = delayers.remove(0);
    assert!(gone.alive().is_ok());
    let killed = Command::new("kill")
        .args(["-9", &gone.pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    std::thread::sleep(Duration::from_millis(100));
    assert!(gone.alive().is_err());
    let addr = SocketAddr::from((net.address(1), PORT));
    let dropped = net.connect_time(0, addr, Duration::from_millis(600));
    assert_eq!(dropped.expect("the probe runs"), None);

    net.set(&[]).expect("healed");
    for delayer in delayers {
        delayer.stop().expect("alive until stopped");
    }
    let healed = connects(&net, 0, 1);
    println!("healed: {healed:?}");
    assert!(all_within(&healed, Duration::ZERO, fast), "{healed:?}");

    for listener in &mut listeners {
        let _ = listener.kill();
        let _ = listener.wait();
    }
}
