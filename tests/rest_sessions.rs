//! `/session.json` and `/login.json` on a real server over HTTPS: signatures, replay guard,
//! timestamps, token expiry, login limits, and the headers the SDK reads.

mod common;

use common::*;
use reqwest::Method;
use serde_json::Value;
use switchboard::auth::signature::SignatureAlgorithm;

/// Sessions in the store, counted directly, to prove a rejected request wrote nothing.
async fn session_rows(t: &TestServer) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) FROM sessions")
        .fetch_one(&t.server.store.pool_for_tests())
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

#[tokio::test]
async fn application_session_is_created_and_shown() {
    let t = TestServer::start().await;
    let response = t
        .post_form("/session.json", None, &t.session_form(None))
        .await;
    assert_eq!(response.status(), 201);
    let expiry = response.headers()["qb-token-expirationdate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(expiry.ends_with(" UTC") && expiry.len() == 23, "{expiry}");
    let body: Value = response.json().await.unwrap();
    let session = &body["session"];
    assert_eq!(session["user_id"], 0);
    assert_eq!(session["application_id"], t.app.application_id);
    let token = session["token"].as_str().unwrap();
    assert_eq!(token.len(), 40);

    let shown = t
        .send(Method::GET, "/session.json", Some(token), None)
        .await;
    assert_eq!(shown.status(), 200);
    assert!(shown.headers().contains_key("qb-token-expirationdate"));
    let shown: Value = shown.json().await.unwrap();
    assert_eq!(shown["session"]["token"], token);
    assert_eq!(shown["session"]["id"], session["id"]);
}

#[tokio::test]
async fn sha256_signatures_are_accepted() {
    let t = TestServer::start().await;
    let form = signed_session_form(
        &t.app,
        None,
        unix_now(),
        next_nonce(),
        SignatureAlgorithm::Sha256,
    );
    let response = t.post_form("/session.json", None, &form).await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn wrong_signature_is_422_and_creates_nothing() {
    let t = TestServer::start().await;
    let mut form = t.session_form(None);
    form.last_mut().unwrap().1 = "0".repeat(40);
    let response = t.post_form("/session.json", None, &form).await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"]["base"][0], "Unexpected signature");
    assert_eq!(session_rows(&t).await, 0);

    // A tampered field after signing fails the same way.
    let mut form = t.session_form(None);
    form[2].1 = "9999".into();
    assert_eq!(
        t.post_form("/session.json", None, &form).await.status(),
        422
    );
    assert_eq!(session_rows(&t).await, 0);
}

#[tokio::test]
async fn wrong_auth_key_and_unknown_app_are_rejected() {
    let t = TestServer::start().await;
    let mut app = t.app.clone();
    app.auth_key = "nope".into();
    let form = signed_session_form(
        &app,
        None,
        unix_now(),
        next_nonce(),
        SignatureAlgorithm::Sha1,
    );
    assert_eq!(
        t.post_form("/session.json", None, &form).await.status(),
        422
    );
    app = t.app.clone();
    app.application_id += 1000;
    let form = signed_session_form(
        &app,
        None,
        unix_now(),
        next_nonce(),
        SignatureAlgorithm::Sha1,
    );
    assert_eq!(
        t.post_form("/session.json", None, &form).await.status(),
        422
    );
}

#[tokio::test]
async fn stale_timestamp_is_rejected() {
    let t = TestServer::start().await;
    // Two hours old, and 2^63 seconds old (the difference wrapped around and passed before).
    for timestamp in [unix_now() - 7200, unix_now() + i64::MIN] {
        let form = signed_session_form(
            &t.app,
            None,
            timestamp,
            next_nonce(),
            SignatureAlgorithm::Sha1,
        );
        let response = t.post_form("/session.json", None, &form).await;
        assert_eq!(response.status(), 422, "timestamp {timestamp}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["errors"]["base"][0]
                .as_str()
                .unwrap()
                .contains("Timestamp"),
            "{body}"
        );
    }
    assert_eq!(session_rows(&t).await, 0);
}

#[tokio::test]
async fn replayed_nonce_is_rejected() {
    let t = TestServer::start().await;
    let form = t.session_form(None);
    assert_eq!(
        t.post_form("/session.json", None, &form).await.status(),
        201
    );
    let replay = t.post_form("/session.json", None, &form).await;
    assert_eq!(replay.status(), 422);
    let body: Value = replay.json().await.unwrap();
    assert!(
        body["errors"]["base"][0]
            .as_str()
            .unwrap()
            .contains("nonce"),
        "{body}"
    );
    assert_eq!(session_rows(&t).await, 1);
}

#[tokio::test]
async fn missing_fields_name_each_field() {
    let t = TestServer::start().await;
    let response = t
        .post_form(
            "/session.json",
            None,
            &[("application_id".into(), "1".into())],
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    for field in ["auth_key", "nonce", "timestamp", "signature"] {
        assert_eq!(body["errors"][field][0], "can't be blank", "{body}");
    }
}

#[tokio::test]
async fn malformed_form_is_400() {
    let t = TestServer::start().await;
    let response = t
        .send(
            Method::POST,
            "/session.json",
            None,
            Some("application_id=%ZZ&x".into()),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["errors"][0].is_string());
    assert_eq!(session_rows(&t).await, 0);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let t = TestServer::start().await;
    let response = t
        .client
        .post(t.url("/session.json"))
        .header("Content-Type", "application/json")
        .body("{\"application_id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn json_session_request_is_accepted() {
    let t = TestServer::start().await;
    let form = t.session_form(None);
    let object: serde_json::Map<String, Value> = form
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let response = t
        .client
        .post(t.url("/session.json"))
        .json(&object)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let t = TestServer::start_with(|c| c.api.body_limit_bytes = 1024).await;
    let big = format!("application_id=1&pad={}", "a".repeat(4096));
    let response = t.send(Method::POST, "/session.json", None, Some(big)).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0], "Request body is too large");
}

#[tokio::test]
async fn user_session_and_bad_password() {
    let t = TestServer::start().await;
    let id = t.create_user("carol", "carolpass1", &[]).await;
    let response = t.user_login("carol", "carolpass1").await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["session"]["user_id"], id);

    let response = t.user_login("carol", "wrong-pass").await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0], "Unauthorized");
    let response = t.user_login("nobody", "whatever1").await;
    assert_eq!(response.status(), 401);
}

/// A hash made with another argon2 cost than the configured one still verifies, and the login
/// replaces it with one at the configured cost (so changing the cost needs no migration).
#[tokio::test]
async fn a_login_rehashes_a_password_stored_at_another_cost() {
    let t = TestServer::start_with(|c| {
        c.api.password_hash_memory_kib = 64;
        c.api.password_hash_passes = 3;
    })
    .await;
    // Made by the operator CLI's path, which hashes at the default cost.
    let node = t.xmpp_user("hank", "hankpass12").await;
    let id: i64 = node.split('-').next().unwrap().parse().unwrap();
    let app = switchboard::model::AppId(t.app.application_id);
    let user = switchboard::model::UserId(id);
    let stored = |t: &TestServer| {
        let store = t.server.store.clone();
        async move { store.user(app, user).await.unwrap().unwrap().password_hash }
    };
    let before = stored(&t).await;
    assert!(!before.contains("m=64,t=3,p=1"), "{before}");

    let wrong = t.session_form(Some(("hank", "hankpass13")));
    assert_eq!(
        t.post_form("/session.json", None, &wrong).await.status(),
        401
    );
    assert_eq!(stored(&t).await, before, "a failed login changes nothing");

    let right = t.session_form(Some(("hank", "hankpass12")));
    assert_eq!(
        t.post_form("/session.json", None, &right).await.status(),
        201
    );
    let after = stored(&t).await;
    assert!(after.starts_with("$argon2id$v=19$m=64,t=3,p=1$"), "{after}");
    assert!(switchboard::auth::secrets::verify_password(
        "hankpass12",
        &after
    ));
    assert!(!switchboard::auth::secrets::verify_password(
        "hankpass13",
        &after
    ));

    // Logins keep working with the new hash (cached and uncached alike), and it stays put.
    let again = t.session_form(Some(("hank", "hankpass12")));
    assert_eq!(
        t.post_form("/session.json", None, &again).await.status(),
        201
    );
    let wrong = t.session_form(Some(("hank", "hankpass13")));
    assert_eq!(
        t.post_form("/session.json", None, &wrong).await.status(),
        401
    );
    assert_eq!(stored(&t).await, after);
    // The XMPP password login checks the same hash.
    t.xmpp_login(&node, "hankpass12", Some("r")).await;
}

#[tokio::test]
async fn repeated_login_failures_make_that_source_back_off_from_that_user() {
    let t = TestServer::start_with(|c| c.api.login_failures_per_user = 3).await;
    t.create_user("dave", "davepass12", &[]).await;
    for _ in 0..3 {
        let r = t.user_login("dave", "bad-pass1").await;
        assert_eq!(r.status(), 401);
    }
    // This address guessed too often: even the right password waits for the window.
    let r = t.user_login("dave", "davepass12").await;
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert!(body["errors"][0].as_str().unwrap().contains("Too many"));
    // Another user is unaffected.
    t.create_user("erin", "erinpass12", &[]).await;
    let r = t.user_login("erin", "erinpass12").await;
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn only_failed_logins_count_against_a_source() {
    let t = TestServer::start_with(|c| c.api.login_attempts_per_source = 2).await;
    t.create_user("fred", "fredpass12", &[]).await;
    // A whole office behind one address logs in: successes never count.
    for _ in 0..5 {
        let r = t.user_login("fred", "fredpass12").await;
        assert_eq!(r.status(), 201);
    }
    for login in ["nobody1", "nobody2"] {
        let r = t.user_login(login, "whatever12").await;
        assert_eq!(r.status(), 401);
    }
    let r = t.user_login("fred", "fredpass12").await;
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn login_binds_and_logout_unbinds_a_user() {
    let t = TestServer::start().await;
    let id = t.create_user("gina", "ginapass12", &[]).await;
    let token = t.session(None).await;
    let form = vec![
        ("login".to_string(), "gina".to_string()),
        ("password".to_string(), "ginapass12".to_string()),
    ];
    let response = t.post_form("/login.json", Some(&token), &form).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["id"], id);
    let shown: Value = t
        .send(Method::GET, "/session.json", Some(&token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["session"]["user_id"], id);

    let response = t
        .send(Method::DELETE, "/login.json", Some(&token), None)
        .await;
    assert_eq!(response.status(), 200);
    let shown: Value = t
        .send(Method::GET, "/session.json", Some(&token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(shown["session"]["user_id"], 0);

    let bad = vec![
        ("login".to_string(), "gina".to_string()),
        ("password".to_string(), "nope-nope".to_string()),
    ];
    assert_eq!(
        t.post_form("/login.json", Some(&token), &bad)
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn destroyed_and_unknown_tokens_get_the_sdk_expiry_error() {
    let t = TestServer::start().await;
    let token = t.session(None).await;
    assert_eq!(
        t.send(Method::DELETE, "/session.json", Some(&token), None)
            .await
            .status(),
        200
    );
    for token in [token.as_str(), "0123456789abcdef0123456789abcdef01234567"] {
        let response = t.send(Method::GET, "/users.json", Some(token), None).await;
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0], "Required session does not exist");
    }
    let response = t.send(Method::GET, "/users.json", None, None).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn tokens_expire_after_the_ttl_without_requests() {
    let t = TestServer::start_with(|c| c.api.token_ttl_s = 1).await;
    let token = t.session(None).await;
    let response = t
        .send(Method::GET, "/session.json", Some(&token), None)
        .await;
    assert_eq!(response.status(), 200);
    // That request moved the expiry to `expires_at`; no request follows until the server's
    // clock is past it.
    let expires_at = expiry(&response);
    t.wait_for_server_clock_after(expires_at).await;
    let response = t
        .send(Method::GET, "/session.json", Some(&token), None)
        .await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0], "Required session does not exist");
}

#[tokio::test]
async fn expiry_slides_with_each_request() {
    let t = TestServer::start().await;
    let token = t.session(None).await;
    let first = expiry(
        &t.send(Method::GET, "/session.json", Some(&token), None)
            .await,
    );
    // The expiry has a resolution of a second: the next request comes in a later one.
    let ttl = t.server.config.api.token_ttl_s as i64;
    t.wait_for_server_clock_after(first - ttl).await;
    let second = expiry(
        &t.send(Method::GET, "/session.json", Some(&token), None)
            .await,
    );
    assert!(second > first, "{first} then {second}");
}

/// The `QB-Token-ExpirationDate` of a response, in Unix seconds.
fn expiry(response: &reqwest::Response) -> i64 {
    let header = response.headers()["qb-token-expirationdate"]
        .to_str()
        .unwrap();
    switchboard::clock::parse_iso8601(header)
        .unwrap_or_else(|| panic!("unparsable expiry {header:?}"))
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let t = TestServer::start().await;
    let token = t.session(None).await;
    let TestServer {
        server,
        dir,
        client,
        ..
    } = t;
    let mut config = (*server.config).clone();
    server.shutdown().await;
    config.api.listen = "127.0.0.1:0".into();
    let server = switchboard::Server::start(config).await.unwrap();
    let response = client
        .get(format!("https://{}/session.json", server.api_addr))
        .header("QB-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.shutdown().await;
    drop(dir);
}

#[tokio::test]
async fn cors_preflight_and_exposed_expiry_header() {
    let t = TestServer::start().await;
    let response = t
        .client
        .request(Method::OPTIONS, t.url("/session.json"))
        .header("Origin", "http://localhost:3000")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "qb-os,qb-sdk,qb-token,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("qb-token") && allowed.contains("qb-sdk"),
        "{allowed}"
    );
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("DELETE") && methods.contains("PUT"),
        "{methods}"
    );

    // Errors carry CORS too, or a browser SDK sees a network error instead of the status.
    let response = t
        .client
        .get(t.url("/users.json"))
        .header("Origin", "http://localhost:3000")
        .header("QB-Token", "bad")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("qb-token-expirationdate"), "{exposed}");
}

#[tokio::test]
async fn unknown_paths_are_json_404_and_never_204() {
    let t = TestServer::start().await;
    let response = t.send(Method::GET, "/nope.json", None, None).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(body["errors"][0].is_string());
}

#[tokio::test]
async fn get_with_form_content_type_and_bare_question_mark_works() {
    let t = TestServer::start().await;
    let token = t.session(None).await;
    let response = t
        .send(Method::GET, "/session.json?", Some(&token), None)
        .await;
    assert_eq!(response.status(), 200);
}
