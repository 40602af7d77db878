//! Regional Raft logs: the durable log, the state machine that applies
//! committed events to `ledger-reservations`, snapshots, the layout of one
//! group per region (voters in the region, learners everywhere else) plus the
//! global control group, and the Raft network.
//!
//! Empty for now: it is built by the issue "Regional Raft logs with openraft"
//! (see ARCHITECTURE.md). Nothing here works yet, and nothing claims to.
