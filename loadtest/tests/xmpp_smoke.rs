//! The load tool against a real Switchboard on loopback: it creates users over REST, logs them
//! in over STARTTLS, sends at a low rate, and prints the contract's JSON with nothing lost.
//! (The side-by-side benchmark is `loadtest/bench-xmpp.sh`; this only proves the tool works.)

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_scenario_reports_the_contract_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = switchboard::config::Config::for_tests(dir.path());
    config.api.login_attempts_per_source = 1000;
    let server = switchboard::Server::start(config).await.unwrap();
    let app = switchboard::admin::create_app(&server.store, "load")
        .await
        .unwrap();
    let app_json = dir.path().join("app.json");
    std::fs::write(&app_json, serde_json::to_string(&app).unwrap()).unwrap();
    let users = dir.path().join("users.txt");
    let tool = env!("CARGO_BIN_EXE_switchboard-loadtest");
    let args: Vec<String> = vec![
        "xmpp".into(),
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        server.xmpp_addrs.tcp.port().to_string(),
        "--users-file".into(),
        users.display().to_string(),
        "--create".into(),
        "6".into(),
        "--api".into(),
        format!("https://{}", server.api_addr),
        "--app-json".into(),
        app_json.display().to_string(),
        "--rate".into(),
        "60".into(),
        "--duration".into(),
        "2".into(),
        "--warmup".into(),
        "0.5".into(),
        "--server-pid".into(),
        std::process::id().to_string(),
        "--tls-insecure".into(),
        "--json".into(),
    ];
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
    let json: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap()).expect("one JSON object");
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
    ] {
        assert!(!json[key].is_null(), "{key} missing: {json}");
    }
    assert_eq!(json["scenario"], "xmpp");
    assert!(json["sent"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(
        json["sent"], json["delivered"],
        "nothing lost at a trivial rate: {json}"
    );
    assert_eq!(json["duplicates"], 0, "{json}");
    assert_eq!(std::fs::read_to_string(&users).unwrap().lines().count(), 6);
    server.shutdown().await;
}
