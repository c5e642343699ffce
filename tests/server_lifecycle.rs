//! The process around the API: metrics and health endpoints, graceful shutdown, the generated
//! certificate kept across restarts, and the operator CLI's contract (`app create --json`).

mod common;

use std::process::Command;

use common::*;

#[tokio::test]
async fn metrics_health_and_ready() {
    let t = TestServer::start().await;
    let token = t.session(None).await;
    let _ = t
        .send(
            reqwest::Method::GET,
            "/users/12345.json",
            Some(&token),
            None,
        )
        .await;
    let metrics_addr = t.server.metrics_addr.expect("metrics listener");
    let plain = reqwest::Client::new();
    let text = plain
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("switchboard_build_info{version="), "{text}");
    assert!(
        text.contains(
            r#"switchboard_http_requests_total{method="POST",route="/session.json",status="201"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/users/{file}",status="404""#),
        "route templates, not ids: {text}"
    );
    assert!(!text.contains("12345"), "no ids in labels");
    assert!(text.contains("switchboard_http_request_duration_seconds_bucket"));
    let health = plain
        .get(format!("http://{metrics_addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = plain
        .get(format!("http://{metrics_addr}/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn shutdown_stops_listening_and_releases_the_store() {
    let t = TestServer::start().await;
    let addr = t.server.api_addr;
    t.session(None).await;
    let token = t.server.shutdown_token();
    t.server.shutdown().await;
    assert!(token.is_cancelled());
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn the_generated_certificate_is_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = switchboard::config::Config::for_tests(dir.path());
    let server = switchboard::Server::start(config.clone()).await.unwrap();
    assert!(server.tls.generated);
    let first = std::fs::read(&server.tls.cert).unwrap();
    server.shutdown().await;
    let server = switchboard::Server::start(config).await.unwrap();
    assert!(!server.tls.generated);
    assert_eq!(std::fs::read(&server.tls.cert).unwrap(), first);
    // The certificate in use is the one on disk: a client trusting only it connects.
    let cert = reqwest::Certificate::from_pem(&first).unwrap();
    let strict = reqwest::Client::builder()
        .add_root_certificate(cert)
        .build()
        .unwrap();
    let response = strict
        .get(format!(
            "https://localhost:{}/session.json",
            server.api_addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    server.shutdown().await;
}

#[test]
fn app_create_prints_the_contract_json_and_the_app_works() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("switchboard.toml");
    std::fs::write(
        &config_path,
        format!("[server]\ndata_dir = {:?}\n", dir.path().join("data")),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["app", "create", "--name", "cli-app", "--json", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    for key in [
        "application_id",
        "auth_key",
        "auth_secret",
        "account_key",
        "api_key",
    ] {
        assert!(!json[key].is_null(), "{key} missing in {json}");
    }
    let app_id = json["application_id"].as_i64().unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "user",
            "create",
            "--app",
            &app_id.to_string(),
            "--login",
            "ops",
            "--password",
            "opspass12",
            "--config",
        ])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The server started on the same data dir signs sessions for that app and that user.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut config = switchboard::config::Config::for_tests(&dir.path().join("data"));
        config.server.data_dir = dir.path().join("data");
        let server = switchboard::Server::start(config).await.unwrap();
        let app = switchboard::admin::AppCredentials {
            application_id: app_id,
            name: "cli-app".into(),
            auth_key: json["auth_key"].as_str().unwrap().into(),
            auth_secret: json["auth_secret"].as_str().unwrap().into(),
            account_key: json["account_key"].as_str().unwrap().into(),
            api_key: json["api_key"].as_str().unwrap().into(),
        };
        let form = signed_session_form(
            &app,
            Some(("ops", "opspass12")),
            unix_now(),
            next_nonce(),
            switchboard::auth::signature::SignatureAlgorithm::Sha1,
        );
        let response = client()
            .post(format!("https://{}/session.json", server.api_addr))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(encode_form(&form))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        server.shutdown().await;
    });
}

#[test]
fn a_config_typo_stops_the_server_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("bad.toml");
    std::fs::write(&config_path, "[api]\nlisten_port = 1\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("listen_port") && stderr.contains("bad.toml"),
        "{stderr}"
    );
}
