//! The sfu scenario against a real Switchboard on loopback: 2 numeric rooms of 4 participants
//! made with `create`, everyone publishing and subscribing to everyone else; every subscription
//! receives, nothing is lost, and the contract's JSON comes out. (A benchmark it is not: this
//! only proves the tool works.) The server runs three media shards, so the kernel hands many of
//! the 32 PeerConnections' datagrams to a shard that does not own their room, and forwarding
//! must still lose nothing.

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sfu_scenario_reports_the_contract_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = switchboard::config::Config::for_tests(dir.path());
    config.sfu.shards = 3;
    let server = switchboard::Server::start(config).await.unwrap();
    let janus = server.sfu_addrs.signalling.expect("signalling listener");
    let args: Vec<String> = [
        "sfu",
        "--janus",
        &format!("ws://{janus}/"),
        "--mode",
        "janus",
        "--rooms",
        "2",
        "--participants",
        "4",
        "--duration",
        "2",
        "--warmup",
        "0.5",
        "--server-pid",
        &std::process::id().to_string(),
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let json = run_tool(args).await;
    for key in [
        "scenario",
        "duration_s",
        "sent",
        "delivered",
        "loss_pct",
        "rate_per_s",
        "latency_ms",
        "server_cpu_s",
        "server_cpu_us_per_unit",
        "server_rss_mb",
        "join_ms",
        "first_frame_ms",
    ] {
        assert!(!json[key].is_null(), "{key} missing: {json}");
    }
    assert_eq!(json["scenario"], "sfu");
    // 8 publishers × 80 packets/s × 3 subscribers each over about 2 s.
    let sent = json["sent"].as_u64().unwrap();
    assert!(sent > 2_000, "{json}");
    assert_eq!(json["sent"], json["delivered"], "nothing lost: {json}");
    let metrics = &server.sfu.metrics;
    assert_eq!(metrics.shards.get(), 3);
    // Each of the 32 client addresses reaches one of three sockets by the kernel's hash: the
    // chance that every one reached its room's own shard is (1/3)^32.
    assert!(
        metrics.media_crossed.get() > 0,
        "no datagram crossed shards"
    );
    assert_eq!(metrics.media_dropped.get(), 0);
    server.shutdown().await;
}

/// QuickBlox mode with seats the tool makes itself: users and one group dialog per room over
/// REST, each user signed in; every participant joins its dialog's room as itself (the server
/// checks the token, the occupancy and the publisher id) and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sfu_quickblox_mode_creates_its_dialogs_and_forwards() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = switchboard::config::Config::for_tests(dir.path());
    config.api.login_attempts_per_source = 1000;
    let server = switchboard::Server::start(config).await.unwrap();
    let app = switchboard::admin::create_app(&server.store, "load")
        .await
        .unwrap();
    let app_json = dir.path().join("app.json");
    std::fs::write(&app_json, serde_json::to_string(&app).unwrap()).unwrap();
    let seats = dir.path().join("seats.txt");
    let janus = server.sfu_addrs.signalling.expect("signalling listener");
    let args: Vec<String> = [
        "sfu",
        "--janus",
        &format!("ws://{janus}/"),
        "--mode",
        "quickblox",
        "--create",
        "--api",
        &format!("https://{}", server.api_addr),
        "--app-json",
        &app_json.display().to_string(),
        "--tls-insecure",
        "--users-file",
        &seats.display().to_string(),
        "--rooms",
        "2",
        "--participants",
        "3",
        "--duration",
        "2",
        "--warmup",
        "0.5",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let json = run_tool(args).await;
    let sent = json["sent"].as_u64().unwrap();
    assert!(sent > 1_000, "{json}");
    assert_eq!(json["sent"], json["delivered"], "nothing lost: {json}");
    // Six seats in two dialogs, each with its user's own token.
    let text = std::fs::read_to_string(&seats).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0][0], lines[2][0]);
    assert_ne!(lines[0][0], lines[3][0]);
    assert!(lines.iter().all(|l| l.len() == 3 && l[2].len() >= 20));
    server.shutdown().await;
}

/// Simulcast publishers (three rid layers) with subscribers pinned to the top layer: every
/// top-layer packet reaches every subscriber, and the lower layers are not forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sfu_simulcast_publishers_reach_subscribers_pinned_to_the_top_layer() {
    let dir = tempfile::tempdir().unwrap();
    let config = switchboard::config::Config::for_tests(dir.path());
    let server = switchboard::Server::start(config).await.unwrap();
    let janus = server.sfu_addrs.signalling.expect("signalling listener");
    let args: Vec<String> = [
        "sfu",
        "--janus",
        &format!("ws://{janus}/"),
        "--mode",
        "janus",
        "--simulcast",
        "--rooms",
        "1",
        "--participants",
        "3",
        "--duration",
        "2",
        "--warmup",
        "1",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let json = run_tool(args).await;
    assert!(json["sent"].as_u64().unwrap() > 300, "{json}");
    assert_eq!(json["sent"], json["delivered"], "nothing lost: {json}");
    // Each publisher sends 1 + 1/4 + 1/16 of its video packets; only the top layer and audio
    // are forwarded, to two subscribers each.
    let metrics = &server.sfu.metrics;
    let (ingress, egress) = (metrics.ingress_packets.get(), metrics.egress_packets.get());
    assert!(
        egress < ingress * 2,
        "lower layers were forwarded: {ingress} in, {egress} out"
    );
    server.shutdown().await;
}

/// Runs the load tool with `args`; it must succeed and end with one JSON object.
async fn run_tool(args: Vec<String>) -> serde_json::Value {
    let tool = env!("CARGO_BIN_EXE_switchboard-loadtest");
    let output = tokio::task::spawn_blocking(move || Command::new(tool).args(&args).output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "loadtest failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).expect("one JSON object")
}
