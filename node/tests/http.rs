//! The HTTP/JSON API end to end, against real `ledger` processes: every
//! route and its refusals, the events stream with its filters and
//! resumption, a follower's redirect to its leader, the limit on requests
//! at once, and the OpenAPI document against what the router serves.

mod common;

use common::cluster_with;
use ledger_node::dev::Cluster;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const USER_A: &str = "00000000-0000-0000-0000-00000000000a";
const USER_B: &str = "00000000-0000-0000-0000-00000000000b";
const BANK: &str = "00000000-0000-0000-0000-0000000000b1";
const SHOP: &str = "00000000-0000-0000-0000-0000000000c1";
const RAIL: &str = "00000000-0000-0000-0000-0000000000d1";

struct Node {
    client: reqwest::Client,
    /// Follows redirects, as a plain HTTP client does.
    follows: reqwest::Client,
    base: String,
}

impl Node {
    /// Clients that keep no idle connection: the node serves at most
    /// twice `http_requests_max` connections, and one a client kept idle
    /// would hold a place the limit tests count on (with 3 requests, the
    /// three slow bodies, a probe and a closed stream's connection until
    /// the node's next keep-alive write already take 5 of the 6).
    fn new(address: &str) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(0)
            .build()
            .expect("a client");
        let follows = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(0)
            .build()
            .expect("a client");
        Self {
            client,
            follows,
            base: format!("http://{address}"),
        }
    }

    async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("answered");
        let status = response.status();
        let text = response.text().await.expect("a body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON: {text}"))
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        Self::answer(self.client.get(format!("{}{path}", self.base))).await
    }

    /// Posts, following a redirect to a leader as a plain client does.
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        Self::answer(
            self.follows
                .post(format!("{}{path}", self.base))
                .json(&body),
        )
        .await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        Self::answer(self.follows.put(format!("{}{path}", self.base)).json(&body)).await
    }

    async fn raw(&self, method: reqwest::Method, path: &str, body: &str) -> (StatusCode, Value) {
        Self::answer(
            self.client
                .request(method, format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await
    }

    /// Waits until this node knows `account` (through the control log).
    async fn knows(&self, account: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.get(&format!("/api/v1/accounts/{account}")).await.0 != StatusCode::OK {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{account} unknown at {}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// USER_B's available funds in region 1's pool, as `node` sees it.
async fn region_1_funds(node: &Node) -> Value {
    let (status, view) = node.get(&format!("/api/v1/accounts/{USER_B}")).await;
    assert_eq!(status, StatusCode::OK, "{view:?}");
    view["regions"]
        .as_array()
        .and_then(|regions| regions.iter().find(|r| r["region"] == 1))
        .map_or(Value::Null, |r| r["available"].clone())
}

/// Tops USER_B up in region 1 until region 0's node stays behind it for
/// two seconds: the nodes read a cut from their fault file every 100 ms,
/// so an entry decided just after `cut` may still reach region 0 (and a
/// strong read there then rightly succeeds).
async fn cut_in_force(zero: &Node, one: &Node) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for n in 0.. {
        assert!(tokio::time::Instant::now() < deadline, "the cut never held");
        let key = key_in(1, 2, &format!("behind the cut {n}"));
        let decided = one
            .post(
                "/api/v1/transactions/topup",
                movement(&key, BANK, USER_B, "1.00"),
            )
            .await;
        assert_eq!(decided.0, StatusCode::CREATED, "{decided:?}");
        let latest = region_1_funds(one).await;
        let mut behind = true;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if region_1_funds(zero).await == latest {
                behind = false;
                break;
            }
        }
        if behind {
            return;
        }
    }
}

/// The refusal's code, after checking the status.
fn code(answer: &(StatusCode, Value), status: u16) -> String {
    assert_eq!(answer.0.as_u16(), status, "{answer:?}");
    for field in ["code", "message", "retryable", "details"] {
        assert!(answer.1.get(field).is_some(), "{field} in {answer:?}");
    }
    answer.1["code"].as_str().unwrap_or_default().to_owned()
}

/// `base`, or `base` with a suffix, so that region `region` of `regions`
/// decides the transaction it names (the keys are hashed to ids, and the
/// id names its region: decision 0009).
fn key_in(region: usize, regions: usize, base: &str) -> String {
    (0..)
        .map(|n| {
            if n == 0 {
                base.to_owned()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|key| {
            let id = ledger_node::http::key_id(key).unwrap_or_else(|_| panic!("a key: {key}"));
            ledger_reservations::TransferId(id).origin_index(regions) == region
        })
        .unwrap_or_default()
}

/// A key that region 0 of two decides.
fn key(base: &str) -> String {
    key_in(0, 2, base)
}

fn account(id: &str, kind: &str) -> Value {
    json!({ "id": id, "ownerId": format!("owner of {id}"), "ownerType": "user",
            "currency": "USD", "type": kind })
}

fn movement(key: &str, from: &str, to: &str, amount: &str) -> Value {
    json!({ "idempotencyKey": key, "sourceAccountId": from, "destinationAccountId": to,
            "amount": amount, "currency": "USD" })
}

/// The leader of `group` as `node` sees it, and its HTTP address.
async fn leader(node: &Node, group: &str) -> (u64, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, cluster) = node.get("/api/v1/cluster").await;
        let leader = cluster["groups"]
            .as_array()
            .and_then(|groups| groups.iter().find(|g| g["group"] == group))
            .and_then(|g| g["leader"].as_u64())
            .unwrap_or(0);
        let http = cluster["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["id"] == leader))
            .and_then(|n| n["http"].as_str())
            .map(str::to_owned);
        if let (true, Some(http)) = (leader != 0, http) {
            return (leader, http);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader of {group}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_route_answers_and_refuses_as_documented() {
    let dir = tempfile::tempdir().expect("a directory");
    let cluster = cluster_with(2, 1, 27_500, dir.path(), |options| {
        options.http_requests_max = 3;
    })
    .await;
    let r0 = Node::new(&cluster.nodes[0].http);
    let r1 = Node::new(&cluster.nodes[1].http);
    assert_eq!(r0.get("/health/live").await.0, StatusCode::OK);
    assert_eq!(r0.get("/health/ready").await.0, StatusCode::OK);

    accounts_open_and_refuse(&r0).await;
    for id in [USER_A, USER_B, BANK, SHOP, RAIL] {
        r1.knows(id).await;
    }
    let payment = transactions_decide_and_refuse(&r0, &r1).await;
    holds_refunds_and_batches(&r0, &payment).await;
    reads_answer(&r0, &r1).await;
    operators_steer_pools(&r0, &r1).await;
    keys_of_any_text_work(&r0).await;
    bodies_that_cannot_be_read_are_refused(&r0).await;
    too_many_at_once_is_refused(&r0, &cluster.nodes[0].http).await;
    the_document_and_the_router_agree(&r0).await;
    cluster.stop().await;
}

async fn accounts_open_and_refuse(r0: &Node) {
    for (id, kind) in [
        (USER_A, "USER"),
        (USER_B, "USER"),
        (BANK, "EXTERNAL"),
        (SHOP, "SYSTEM"),
        (RAIL, "EXTERNAL"),
    ] {
        let (status, body) = r0.post("/api/v1/accounts", account(id, kind)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["created"], true);
        assert_eq!(body["ownerType"], "user");
    }
    // The same again is answered as it was; other content for the id is a clash.
    let again = r0.post("/api/v1/accounts", account(USER_A, "USER")).await;
    assert_eq!(
        (again.0, &again.1["created"]),
        (StatusCode::OK, &json!(false))
    );
    let clash = r0.post("/api/v1/accounts", account(USER_A, "SYSTEM")).await;
    assert_eq!(code(&clash, 409), "ACCOUNT_EXISTS");
    // Without an id, a fresh one.
    let mut fresh = account(USER_A, "USER");
    fresh["id"] = Value::Null;
    let fresh = r0.post("/api/v1/accounts", fresh).await;
    assert_eq!(fresh.0, StatusCode::CREATED, "{fresh:?}");
    assert_ne!(fresh.1["id"], USER_A);
    let mut reserved = account("00000000-0000-0000-0000-0000000000e1", "USER");
    reserved["metadata"] = json!({ "ownerType": "x" });
    assert_eq!(
        code(&r0.post("/api/v1/accounts", reserved).await, 400),
        "INVALID_REQUEST"
    );
    let currency = json!({ "id": "00000000-0000-0000-0000-0000000000e2", "ownerId": "o",
                           "currency": "US", "type": "USER" });
    assert_eq!(
        code(&r0.post("/api/v1/accounts", currency).await, 422),
        "UNKNOWN_CURRENCY"
    );
    let kind = json!({ "ownerId": "o", "currency": "USD", "type": "BANK" });
    assert_eq!(
        code(&r0.post("/api/v1/accounts", kind).await, 400),
        "INVALID_JSON"
    );
}

/// Top-ups, transfers, their retries and refusals; returns a plain
/// payment's id.
async fn transactions_decide_and_refuse(r0: &Node, r1: &Node) -> String {
    let path = "/api/v1/transactions/topup";
    let first = r0
        .post(path, movement(&key("top-up 1"), BANK, USER_A, "100.00"))
        .await;
    assert_eq!(first.0, StatusCode::CREATED, "{first:?}");
    assert_eq!(first.1["status"], "completed");
    assert_eq!(first.1["new"], true);
    // The same key to another region's node is the same transaction.
    let retry = r1
        .post(path, movement(&key("top-up 1"), BANK, USER_A, "100.00"))
        .await;
    assert_eq!(retry.0, StatusCode::OK, "{retry:?}");
    assert_eq!(retry.1["transactionId"], first.1["transactionId"]);
    assert_eq!(retry.1["new"], false);
    let changed = r1
        .post(path, movement(&key("top-up 1"), BANK, USER_A, "99.00"))
        .await;
    assert_eq!(code(&changed, 409), "IDEMPOTENCY_CONFLICT");

    let transfer = "/api/v1/transactions/transfer";
    let moved = r1
        .post(transfer, movement(&key("move 1"), USER_A, USER_B, "30.00"))
        .await;
    assert_eq!(moved.0, StatusCode::CREATED, "{moved:?}");
    let poor = r0
        .post(
            transfer,
            movement(&key("move 2"), USER_B, USER_A, "1000.00"),
        )
        .await;
    assert_eq!(code(&poor, 422), "INSUFFICIENT_FUNDS");
    assert!(poor.1["details"]["availableGlobal"].is_string(), "{poor:?}");
    let amount = r0
        .post(transfer, movement(&key("move 3"), USER_A, USER_B, "12.5x"))
        .await;
    assert_eq!(code(&amount, 400), "INVALID_AMOUNT");
    let fine = r0
        .post(transfer, movement(&key("move 4"), USER_A, USER_B, "0.001"))
        .await;
    assert_eq!(code(&fine, 400), "INVALID_AMOUNT");
    let unknown = "00000000-0000-0000-0000-0000000000ff";
    let nobody = r0
        .post(transfer, movement(&key("move 5"), USER_A, unknown, "1.00"))
        .await;
    assert_eq!(code(&nobody, 404), "UNKNOWN_ACCOUNT");
    let mut held = movement(&key("move 6"), USER_A, USER_B, "1.00");
    held["holdTimeoutMs"] = json!(1000);
    assert_eq!(code(&r0.post(transfer, held).await, 400), "INVALID_REQUEST");
    let empty_key = movement("", USER_A, USER_B, "1.00");
    assert_eq!(
        code(&r0.post(transfer, empty_key).await, 400),
        "INVALID_REQUEST"
    );

    let payment = r0
        .post(
            "/api/v1/transactions/payment",
            movement(&key("pay 1"), USER_A, SHOP, "20.00"),
        )
        .await;
    assert_eq!(payment.0, StatusCode::CREATED, "{payment:?}");
    payment.1["transactionId"]
        .as_str()
        .expect("an id")
        .to_owned()
}

async fn holds_refunds_and_batches(r0: &Node, payment: &str) {
    let mut held = movement(&key("hold 1"), USER_A, SHOP, "10.00");
    held["holdTimeoutMs"] = json!(600_000);
    let held = r0.post("/api/v1/transactions/payment", held).await;
    assert_eq!(
        (held.0, &held.1["status"]),
        (StatusCode::CREATED, &json!("pending"))
    );
    let hold = held.1["transactionId"].as_str().expect("an id").to_owned();
    let capture = format!("/api/v1/transactions/{hold}/capture");
    let captured = r0.post(&capture, json!({ "amount": "7.00" })).await;
    assert_eq!(
        (captured.0, &captured.1["status"]),
        (StatusCode::CREATED, &json!("captured"))
    );
    // A retry without a key is the same capture.
    let again = r0.post(&capture, json!({ "amount": "7.00" })).await;
    assert_eq!((again.0, &again.1["new"]), (StatusCode::OK, &json!(false)));
    let void = format!("/api/v1/transactions/{hold}/void");
    assert_eq!(
        code(&r0.raw(reqwest::Method::POST, &void, "").await, 409),
        "PENDING_ALREADY_RESOLVED"
    );

    let mut other = movement(&key("hold 2"), USER_A, SHOP, "5.00");
    other["holdTimeoutMs"] = json!(600_000);
    let other = r0.post("/api/v1/transactions/payment", other).await;
    let other = other.1["transactionId"].as_str().expect("an id").to_owned();
    let voided = r0
        .raw(
            reqwest::Method::POST,
            &format!("/api/v1/transactions/{other}/void"),
            "",
        )
        .await;
    assert_eq!(
        (voided.0, &voided.1["status"]),
        (StatusCode::CREATED, &json!("voided"))
    );

    let refund =
        json!({ "idempotencyKey": key("refund 1"), "paymentId": payment, "amount": "5.00" });
    let refunded = r0.post("/api/v1/transactions/refund", refund).await;
    assert_eq!(refunded.0, StatusCode::CREATED, "{refunded:?}");
    let too_much =
        json!({ "idempotencyKey": key("refund 2"), "paymentId": payment, "amount": "50.00" });
    assert_eq!(
        code(&r0.post("/api/v1/transactions/refund", too_much).await, 422),
        "REFUND_EXCEEDS_PAYMENT"
    );

    let withdrawal = json!({ "idempotencyKey": key("out 1"), "sourceAccountId": USER_A,
        "destinationAccountId": RAIL, "amount": "3.00", "currency": "USD",
        "payoutDestination": "DE89370400440532013000", "timeoutMs": 60_000 });
    let out = r0.post("/api/v1/transactions/withdrawal", withdrawal).await;
    assert_eq!(
        (out.0, &out.1["status"]),
        (StatusCode::CREATED, &json!("pending"))
    );

    // A batch: a linked pair all or nothing, each answered in its place.
    let mut first = movement(&key("batch 1"), USER_A, USER_B, "1.00");
    first["type"] = json!("transfer");
    first["linked"] = json!(true);
    let mut second = movement(&key("batch 2"), USER_A, USER_B, "1000.00");
    second["type"] = json!("transfer");
    let mut third = movement(&key("batch 3"), USER_A, USER_B, "2.00");
    third["type"] = json!("transfer");
    let batch = json!({ "transactions": [first, second, third] });
    let (status, body) = r0.post("/api/v1/transactions/batch", batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["error"]["code"], "LINKED_CHAIN_FAILED", "{body}");
    assert_eq!(results[1]["error"]["code"], "INSUFFICIENT_FUNDS", "{body}");
    assert_eq!(results[2]["accepted"]["status"], "completed", "{body}");
    // One transaction that can never be refuses the call: nothing applied.
    let mut good = movement(&key("batch 4"), USER_A, USER_B, "1.00");
    good["type"] = json!("topup");
    let bad = json!({ "type": "void", "transactionId": "not an id" });
    let refused = r0
        .post(
            "/api/v1/transactions/batch",
            json!({ "transactions": [good, bad] }),
        )
        .await;
    assert!(code(&refused, 400).starts_with("INVALID"), "{refused:?}");
    assert!(
        refused.1["message"]
            .as_str()
            .unwrap_or("")
            .contains("transaction 1"),
        "{refused:?}"
    );
    assert_eq!(
        code(
            &r0.get(&format!("/api/v1/transactions/{}", key("batch 4")))
                .await,
            404
        ),
        "TRANSFER_NOT_FOUND"
    );
}

async fn reads_answer(r0: &Node, r1: &Node) {
    // By id or by its idempotency key, from any node (strong: holding
    // everything committed before the call, wherever it was decided).
    let (status, by_key) = r1
        .get(&format!(
            "/api/v1/transactions/{}?strong=true",
            key("top-up 1")
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{by_key}");
    assert_eq!(by_key["amount"], "100.00");
    assert_eq!(by_key["sourceAccountId"], BANK);
    let id = by_key["transactionId"].as_str().expect("an id").to_owned();
    assert_eq!(
        r0.get(&format!("/api/v1/transactions/{id}")).await.1,
        by_key
    );
    code(
        &r0.get("/api/v1/transactions/00000000-0000-0000-0000-000000000999")
            .await,
        404,
    );

    // 100 - 30 - 20 - 7 - 5 (voided back) + 5 refunded - 3 withdrawn - 2.
    let expected = "43.00";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, balance) = r1
            .get(&format!("/api/v1/accounts/{USER_A}/balance?strong=true"))
            .await;
        if balance["balance"] == expected {
            assert_eq!(
                balance["regions"].as_array().map(Vec::len),
                Some(2),
                "{balance}"
            );
            assert_eq!(
                balance["watermarks"].as_array().map(Vec::len),
                Some(2),
                "{balance}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "balance {balance}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, account) = r0.get(&format!("/api/v1/accounts/{USER_A}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&account["type"], &account["status"]),
        (&json!("USER"), &json!("active"))
    );
    assert_eq!(account["ownerType"], "user");
    let (status, history) = r0
        .get(&format!("/api/v1/accounts/{USER_A}/history?limit=3"))
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(
        history["entries"].as_array().map(Vec::len),
        Some(3),
        "{history}"
    );
    assert_eq!(history["truncated"], true);
    assert!(
        history["entries"][0]["stamp"]["ns"].is_string(),
        "{history}"
    );
    code(
        &r0.get(&format!("/api/v1/accounts/{USER_A}/history?asOf=x"))
            .await,
        400,
    );
    code(
        &r0.get(&format!("/api/v1/accounts/{USER_A}/history?limit=-1"))
            .await,
        400,
    );
    code(
        &r0.get(&format!("/api/v1/accounts/{USER_A}/history?limit=20000"))
            .await,
        400,
    );
    assert_eq!(
        code(&r0.get("/api/v1/accounts/xyz").await, 400),
        "INVALID_REQUEST"
    );
    assert_eq!(
        code(
            &r0.get("/api/v1/accounts/00000000-0000-0000-0000-000000000999")
                .await,
            404
        ),
        "UNKNOWN_ACCOUNT"
    );
    code(
        &r0.get(&format!("/api/v1/accounts/{USER_A}?strong=maybe"))
            .await,
        400,
    );
}

async fn operators_steer_pools(r0: &Node, r1: &Node) {
    let (status, pools) = r0.get(&format!("/api/v1/pools/{USER_B}")).await;
    assert_eq!(status, StatusCode::OK, "{pools}");
    let policy = format!("/api/v1/pools/{USER_B}/policy");
    let set = r0.put(&policy, json!({ "floor": "1.00" })).await;
    assert_eq!((set.0, &set.1["changed"]), (StatusCode::OK, &json!(true)));
    let same = r1.put(&policy, json!({ "floor": "1.00" })).await;
    assert_eq!(
        (same.0, &same.1["changed"]),
        (StatusCode::OK, &json!(false))
    );
    code(&r0.put(&policy, json!({ "floor": "-1" })).await, 400);
    let removed = r0.put(&policy, json!({ "floor": "0" })).await;
    assert_eq!(removed.0, StatusCode::OK, "{removed:?}");

    // USER_B's money is in region 0 (where "move 1" was... decided by its
    // key's region), so move it by hand from wherever it is.
    let (_, pools) = r0.get(&format!("/api/v1/pools/{USER_B}")).await;
    let from = pools["regions"]
        .as_array()
        .and_then(|regions| regions.iter().find(|r| r["available"] != "0.00"))
        .and_then(|r| r["region"].as_u64())
        .expect("a region with money");
    let (node, to) = if from == 0 { (r0, 1) } else { (r1, 0) };
    let rebalance = format!("/api/v1/pools/{USER_B}/rebalance");
    let moved = node
        .post(&rebalance, json!({ "amount": "1.00", "toRegion": to }))
        .await;
    assert_eq!(moved.0, StatusCode::OK, "{moved:?}");
    assert_eq!(moved.1["region"], from);
    let too_much = node
        .post(&rebalance, json!({ "amount": "1000.00", "toRegion": to }))
        .await;
    assert_eq!(code(&too_much, 422), "INSUFFICIENT_FUNDS");
    let (status, cluster) = r0.get("/api/v1/cluster").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cluster["nodes"].as_array().map(Vec::len), Some(2));
    assert!(cluster["clockNs"].is_string(), "{cluster}");
}

/// Keys as clients write them, landing wherever their hashes say: a linked
/// chain of them is decided in one region, and no client key can take the
/// id of another's keyless capture.
async fn keys_of_any_text_work(r0: &Node) {
    let mut chain = Vec::new();
    for (n, to) in [(1, USER_A), (2, USER_B), (3, USER_A)] {
        let mut member = movement(&format!("chain member {n}"), BANK, to, "1.00");
        member["type"] = json!("topup");
        member["linked"] = json!(n < 3);
        chain.push(member);
    }
    let (status, body) = r0
        .post(
            "/api/v1/transactions/batch",
            json!({ "transactions": chain }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let regions: Vec<&Value> = (0..3)
        .map(|n| &body["results"][n]["accepted"]["region"])
        .collect();
    assert!(regions.iter().all(|region| region.is_u64()), "{body}");
    assert!(regions.windows(2).all(|pair| pair[0] == pair[1]), "{body}");
    // Each member is found by its key, wherever its chain put it.
    for n in 1..=3 {
        let (status, found) = r0
            .get(&format!("/api/v1/transactions/chain member {n}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{found}");
        assert_eq!(
            found["transactionId"],
            body["results"][n - 1]["transactionId"]
        );
    }

    let mut held = movement(&key("held for a squatter"), USER_A, SHOP, "1.00");
    held["holdTimeoutMs"] = json!(600_000);
    let held = r0.post("/api/v1/transactions/payment", held).await;
    let hold = held.1["transactionId"].as_str().expect("an id").to_owned();
    let squatter = movement(&format!("capture/{hold}"), BANK, USER_B, "1.00");
    let squatted = r0.post("/api/v1/transactions/topup", squatter).await;
    assert!(squatted.0.is_success(), "{squatted:?}");
    let captured = r0
        .raw(
            reqwest::Method::POST,
            &format!("/api/v1/transactions/{hold}/capture"),
            "",
        )
        .await;
    assert_eq!(captured.0, StatusCode::CREATED, "{captured:?}");
}

async fn bodies_that_cannot_be_read_are_refused(r0: &Node) {
    use reqwest::Method;
    let path = "/api/v1/transactions/transfer";
    assert_eq!(
        code(&r0.raw(Method::POST, path, "{bad").await, 400),
        "MALFORMED_JSON"
    );
    let unknown = r#"{"idempotencyKey":"k","sourceAccountId":"1","destinationAccountId":"2","amount":"1","currency":"USD","colour":"red"}"#;
    assert_eq!(
        code(&r0.raw(Method::POST, path, unknown).await, 400),
        "INVALID_JSON"
    );
    let wrong = r#"{"idempotencyKey":5,"sourceAccountId":"1","destinationAccountId":"2","amount":"1","currency":"USD"}"#;
    assert_eq!(
        code(&r0.raw(Method::POST, path, wrong).await, 400),
        "INVALID_JSON"
    );
    let plain = Node::answer(r0.client.post(format!("{}{path}", r0.base)).body("{}")).await;
    assert_eq!(code(&plain, 415), "UNSUPPORTED_MEDIA_TYPE");
    let huge = format!(
        "{{\"pad\":\"{}\"}}",
        "x".repeat(ledger_node::http::BODY_BYTES_MAX)
    );
    assert_eq!(
        code(&r0.raw(Method::POST, path, &huge).await, 413),
        "PAYLOAD_TOO_LARGE"
    );
    assert_eq!(code(&r0.get("/api/v1/nothing").await, 404), "NO_ROUTE");
    assert_eq!(
        code(&r0.get("/api/v1/accounts/%FF").await, 400),
        "INVALID_REQUEST"
    );
    assert_eq!(
        code(&r0.raw(Method::DELETE, "/api/v1/cluster", "").await, 405),
        "METHOD_NOT_ALLOWED"
    );
}

/// With `http_requests_max` 3: one event stream may be open (a quarter,
/// at least one), a second is refused with 429 and the rest of the API is
/// still answered; three requests whose bodies have not arrived take every
/// place, so a fourth is refused with 429 at once, until the three are
/// answered 408 (the body read's 10 s). Health probes are always answered.
/// A client that sends half its headers is cut off within the header read's
/// 10 s, not hyper's own 30.
async fn too_many_at_once_is_refused(r0: &Node, address: &str) {
    let stream = r0
        .client
        .get(format!("{}/api/v1/events", r0.base))
        .send()
        .await
        .expect("a stream");
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        code(&r0.get("/api/v1/events").await, 429),
        "TOO_MANY_REQUESTS"
    );
    assert_eq!(r0.get("/api/v1/cluster").await.0, StatusCode::OK);
    drop(stream);

    let started = tokio::time::Instant::now();
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(tokio::spawn(half_a_body(address.to_owned())));
    }
    // The three take their places as soon as their headers are in. A
    // probe answered at the moment one arrives holds a place then, and
    // that one is refused 429 at once: another takes its turn.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        for task in &mut waiting {
            if task.is_finished() {
                let refused =
                    std::mem::replace(task, tokio::spawn(half_a_body(address.to_owned())));
                let answer = refused.await.expect("a client");
                assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
            }
        }
        let answer = r0.get("/api/v1/cluster").await;
        if answer.0 == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(code(&answer, 429), "TOO_MANY_REQUESTS");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "three slow bodies hold three places"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(r0.get("/health/live").await.0, StatusCode::OK);
    let half_headers = tokio::spawn(half_the_headers(address.to_owned()));
    for answer in waiting {
        let answer = answer.await.expect("a client");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "408 after the body read's 10 s"
    );
    assert_eq!(r0.get("/api/v1/cluster").await.0, StatusCode::OK);
    let cut_after = half_headers.await.expect("a client");
    assert!(
        cut_after < Duration::from_secs(20),
        "cut off after {cut_after:?}"
    );
}

/// Sends headers and one byte of a 100-byte body, then waits; the answer.
async fn half_a_body(address: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    let head = "POST /api/v1/transactions/transfer HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.expect("sent");
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read(&mut answer));
    let count = read.await.expect("answered in time").expect("read");
    String::from_utf8_lossy(&answer[..count]).into_owned()
}

/// Sends half a request's headers, then waits; how long until it is cut off.
async fn half_the_headers(address: String) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = tokio::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    stream
        .write_all(b"POST /api/v1/transactions/transfer HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("sent");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer));
    assert!(read.await.is_ok(), "the connection is closed");
    started.elapsed()
}

/// Every operation of the document reaches a handler (not the fallback,
/// not 405), and every method the router takes on a documented path is
/// documented there.
async fn the_document_and_the_router_agree(r0: &Node) {
    use reqwest::Method;
    let (status, document) = r0.get("/api/docs/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    assert_eq!(paths.len(), 23, "{:?}", paths.keys());
    // Every schema it refers to is in it.
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    let text = document.to_string();
    for reference in text.split("#/components/schemas/").skip(1) {
        let name: String = reference
            .chars()
            .take_while(|c| c.is_alphanumeric())
            .collect();
        assert!(
            schemas.contains_key(&name),
            "{name} is referred to and missing"
        );
    }
    for (path, item) in paths {
        let concrete = path.replace("{id}", USER_A).replace("{account}", USER_A);
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            let documented = item.get(method.as_str().to_ascii_lowercase()).is_some();
            let mut request = r0
                .client
                .request(method.clone(), format!("{}{concrete}", r0.base));
            if method != Method::GET {
                request = request
                    .header("content-type", "application/json")
                    .body("{}");
            }
            let response = request.send().await.expect("answered");
            let status = response.status();
            let routed = status != StatusCode::METHOD_NOT_ALLOWED
                && !(status == StatusCode::NOT_FOUND
                    && response
                        .text()
                        .await
                        .unwrap_or_default()
                        .contains("NO_ROUTE"));
            assert_eq!(routed, documented, "{method} {path}: {status}");
        }
    }
    let page = r0
        .client
        .get(format!("{}/api/docs", r0.base))
        .send()
        .await
        .expect("a page");
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.expect("text");
    assert!(
        page.contains("/api/docs/openapi.json"),
        "the page reads the document"
    );
}

#[tokio::test]
async fn events_stream_filter_resume_and_a_follower_redirects() {
    let dir = tempfile::tempdir().expect("a directory");
    let cluster = cluster_with(2, 2, 26_500, dir.path(), |_| {}).await;
    let any = Node::new(&cluster.nodes[0].http);
    for (id, kind) in [(USER_A, "USER"), (USER_B, "USER"), (BANK, "EXTERNAL")] {
        let (status, body) = any.post("/api/v1/accounts", account(id, kind)).await;
        assert!(status.is_success(), "{body}");
    }
    for node in &cluster.nodes {
        for id in [USER_A, USER_B, BANK] {
            Node::new(&node.http).knows(id).await;
        }
    }

    // A follower sends a write to its region's leader (307: same method
    // and body), naming it; the client follows and it is decided there.
    let topup = movement(&key("redirected"), BANK, USER_A, "50.00");
    let follower = redirected_by_a_follower(&cluster, &any, &topup).await;
    let followed = follower.post("/api/v1/transactions/topup", topup).await;
    // 201, or 200 when a follower that turned leader took it on the way.
    assert!(followed.0.is_success(), "{followed:?}");
    assert_eq!(followed.1["region"], 0, "{followed:?}");
    // Region 1's transactions are sent on to region 1 by any node.
    let elsewhere = key_in(1, 2, "sent on");
    let forwarded = follower
        .post(
            "/api/v1/transactions/topup",
            movement(&elsewhere, BANK, USER_B, "5.00"),
        )
        .await;
    assert_eq!(
        (forwarded.0, &forwarded.1["region"]),
        (StatusCode::CREATED, &json!(1))
    );

    let events = read_events(&follower, "", None, 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    let regions: Vec<u64> = events
        .iter()
        .filter_map(|(_, e)| e["region"].as_u64())
        .collect();
    assert_eq!(
        regions
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        2
    );
    // Filtered by account, and by region.
    let of_b = read_events(&follower, &format!("?account={USER_B}"), None, 1).await;
    assert_eq!(of_b[0].1["transaction"]["destinationAccountId"], USER_B);
    let of_0 = read_events(&follower, "?region=0", None, 1).await;
    assert_eq!(of_0[0].1["region"], 0);
    // Resumed after the first event: the second comes, then new ones.
    let (first_id, _) = &events[0];
    let after = follower
        .post(
            "/api/v1/transactions/transfer",
            movement(&key("after"), USER_A, USER_B, "1.00"),
        )
        .await;
    assert_eq!(after.0, StatusCode::CREATED, "{after:?}");
    let resumed = read_events(&follower, "", Some(first_id), 2).await;
    let resumed: Vec<&Value> = resumed.iter().map(|(_, event)| event).collect();
    assert!(
        resumed.contains(&&events[1].1),
        "the second comes again: {resumed:?}"
    );
    assert!(
        !resumed.contains(&&events[0].1),
        "the first does not: {resumed:?}"
    );
    assert!(
        resumed
            .iter()
            .any(|event| event["transaction"]["amount"] == "1.00"),
        "then the new one: {resumed:?}"
    );
    let bad = Node::answer(
        follower
            .client
            .get(format!("{}/api/v1/events", follower.base))
            .header("last-event-id", "x"),
    )
    .await;
    code(&bad, 400);
    assert_eq!(
        code(&follower.get("/api/v1/events?region=7").await, 400),
        "UNKNOWN_REGION"
    );
    let unknown = Node::answer(
        follower
            .client
            .get(format!("{}/api/v1/events", follower.base))
            .header("last-event-id", "0:1,9:1"),
    )
    .await;
    assert_eq!(code(&unknown, 400), "UNKNOWN_REGION");

    // A batch a node decides part of (sends part on) is answered in place,
    // never redirected after some of it was applied.
    let mut here = movement(&key("partly here"), BANK, USER_A, "1.00");
    here["type"] = json!("topup");
    let mut there = movement(&key_in(1, 2, "partly there"), BANK, USER_B, "1.00");
    there["type"] = json!("topup");
    let batch = json!({ "transactions": [here, there] });
    let answer = Node::answer(
        follower
            .client
            .post(format!("{}/api/v1/transactions/batch", follower.base))
            .json(&batch),
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK, "{answer:?}");
    assert_eq!(
        answer.1["results"][1]["accepted"]["region"], 1,
        "{answer:?}"
    );
    let first = &answer.1["results"][0];
    assert!(
        first["accepted"].is_object() || first["error"]["code"] == "NOT_LEADER",
        "{answer:?}"
    );

    // Region 0 cut off from region 1, which goes on deciding: a strong read
    // in region 0 cannot hold region 1's latest, and says so (503).
    let (zero, one): (Vec<u64>, Vec<u64>) = cluster
        .nodes
        .iter()
        .map(|node| node.id)
        .partition(|id| cluster.nodes.iter().any(|n| n.id == *id && n.region == 0));
    cluster.cut(&zero, &one).expect("cut");
    let region_1 = Node::new(&cluster.nodes[2].http);
    cut_in_force(&Node::new(&cluster.nodes[0].http), &region_1).await;
    let strong = format!("/api/v1/accounts/{USER_B}?strong=true");
    let unavailable = Node::new(&cluster.nodes[0].http).get(&strong).await;
    assert_eq!(code(&unavailable, 503), "REGION_UNAVAILABLE");
    assert_eq!(unavailable.1["retryable"], true);
    cluster.heal().expect("heal");
    cluster.stop().await;
}

/// Sends `topup` to a follower of region 0 until one (still a follower)
/// answers 307 to another node of region 0, at the same path; returns it.
/// An election between finding the follower and asking it is retried.
async fn redirected_by_a_follower(cluster: &Cluster, any: &Node, topup: &Value) -> Node {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (leader_id, _) = leader(any, "region-0").await;
        let follower = cluster
            .nodes
            .iter()
            .find(|node| node.region == 0 && node.id != leader_id)
            .expect("a follower");
        let node = Node::new(&follower.http);
        let response = node
            .client
            .post(format!("{}/api/v1/transactions/topup", node.base))
            .json(topup)
            .send()
            .await
            .expect("answered");
        if response.status() == StatusCode::TEMPORARY_REDIRECT {
            let location = response.headers()["location"]
                .to_str()
                .expect("text")
                .to_owned();
            let others: Vec<String> = cluster
                .nodes
                .iter()
                .filter(|other| other.region == 0 && other.id != follower.id)
                .map(|other| format!("http://{}/api/v1/transactions/topup", other.http))
                .collect();
            assert!(others.contains(&location), "{location} not in {others:?}");
            return node;
        }
        // Only an election may stand in the way: this node leads now (and
        // took it), or no leader is known for a moment.
        let status = response.status();
        assert!(
            status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE,
            "a follower redirects: {status}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "no follower redirected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The first `count` events of the stream at `node`, with their ids.
async fn read_events(
    node: &Node,
    query: &str,
    last_event_id: Option<&str>,
    count: usize,
) -> Vec<(String, Value)> {
    use futures_util::StreamExt;
    let mut request = node
        .client
        .get(format!("{}/api/v1/events{query}", node.base));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.expect("a stream");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("events in time")
            .expect("the stream goes on")
            .expect("a chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(|value| value.trim().to_owned())
            };
            if field("event:").as_deref() == Some("transaction") {
                let data = field("data:").expect("data");
                events.push((
                    field("id:").expect("an id"),
                    serde_json::from_str(&data).expect("JSON"),
                ));
            }
        }
    }
    events.truncate(count);
    events
}

#[tokio::test]
async fn a_connection_that_sends_no_request_is_closed() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("a directory");
    let cluster = cluster_with(1, 1, 6_520, dir.path(), |_| {}).await;
    let address = cluster.nodes[0].http.clone();
    let silent = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    // Half of HTTP/2's preface: hyper waits for the rest to know the protocol.
    let mut partial = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    partial
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("written");
    let (silent, partial) =
        tokio::join!(common::closed_after(silent), common::closed_after(partial));
    // Closed for want of a request, not at once.
    for waited in [silent, partial] {
        assert!(waited >= Duration::from_secs(5), "closed after {waited:?}");
    }
    // Still answering.
    let (status, _) = Node::new(&address).get("/health/live").await;
    assert_eq!(status, StatusCode::OK);
    // An HTTP/2 connection that asked once and then only answers pings is
    // shut down (GOAWAY) once idle for a minute, though its client keeps it.
    let tcp = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
    let open = tokio::spawn(connection);
    let request = axum::http::Request::get(format!("http://{address}/health/live"))
        .body(())
        .expect("a request");
    let (answer, _) = client.send_request(request, true).expect("sent");
    let answer = answer.await.expect("answered");
    assert_eq!(answer.status(), StatusCode::OK);
    let started = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(120), open).await;
    assert!(ended.is_ok(), "the idle connection was kept");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(50), "closed after {waited:?}");
    drop(client);
    cluster.stop().await;
}
