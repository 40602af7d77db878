//! The harness's network: hosts in namespaces of their own that reach each
//! other until a rule says otherwise, and nothing left behind. Needs root
//! (the suite's machines run tests as root).

use ledger_jepsen::net::{Network, Rule};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

const PORT: u16 = 9000;

fn probe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_jepsen"))
}

/// A listener inside `host` for the rest of the test.
fn listen(net: &Network, host: usize) -> Child {
    net.listener(host, PORT, 60).expect("the listener starts")
}

fn reaches(net: &Network, from: usize, to: usize) -> bool {
    let addr = SocketAddr::from((net.address(to), PORT));
    // A listener just started may not be bound yet: a refusal is an
    // answer too, so one try tells a link that works from one that drops.
    net.connect_time(from, addr, Duration::from_millis(400))
        .expect("the probe runs")
        .is_some()
}

fn namespaces() -> String {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn hosts_reach_each_other_until_a_rule_drops_a_link_and_nothing_is_left_behind() {
    let net = Network::create(3, probe()).expect("namespaces can be made here (as root)");
    let first = net.namespace(0);
    let mut listeners: Vec<Child> = (0..3).map(|host| listen(&net, host)).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(reaches(&net, 0, 1) && reaches(&net, 1, 2) && reaches(&net, 2, 0));

    // Host 1 drops what host 0 sends: 0 cannot open a connection to 1
    // (its SYN is dropped); 0 still reaches 2, and 2 reaches 1.
    net.set(&[Rule::Drop { from: 0, to: 1 }]).expect("rule");
    assert!(!reaches(&net, 0, 1));
    assert!(reaches(&net, 0, 2) && reaches(&net, 2, 1));
    // One way only: 1 reaching 0 needs 0's answer, which 1 drops.
    assert!(!reaches(&net, 1, 0));

    // A loss of one in one is a cut from every host but the client.
    net.set(&[Rule::Loss {
        to: 2,
        probability: 1.0,
    }])
    .expect("rule");
    assert!(!reaches(&net, 0, 2) && !reaches(&net, 1, 2));
    assert!(reaches(&net, 0, 1));

    net.set(&[]).expect("healed");
    assert!(reaches(&net, 0, 1) && reaches(&net, 1, 0) && reaches(&net, 0, 2));

    for listener in &mut listeners {
        let _ = listener.kill();
        let _ = listener.wait();
    }
    assert!(namespaces().contains(&first));
    drop(net);
    assert!(!namespaces().contains(&first), "{}", namespaces());
}
