//! `/users…` on a real server: sign-up, lookups, list filters, updates, deletes, the
//! permission table (app token read-only, users edit only themselves, API key = account
//! owner), bad input that changes nothing, and application isolation.

mod common;

use common::*;
use reqwest::Method;
use serde_json::Value;

fn form(pairs: &[(&str, &str)]) -> String {
    encode_form(
        &pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
    )
}

/// Sends a request (see [`TestServer::send`]) and returns its status and JSON body.
async fn call(
    t: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, Value) {
    json(t.send(method, path, token, body).await).await
}

async fn json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn sign_up_with_an_application_token_and_read_back() {
    let t = TestServer::start().await;
    let token = t.session(None).await;
    let body = form(&[
        ("user[login]", "hana"),
        ("user[password]", "hanapass12"),
        ("user[email]", "hana@example.com"),
        ("user[full_name]", "Hana H"),
        ("user[phone]", "+100200"),
        ("user[tag_list]", "red, blue"),
        ("user[custom_data]", "{\"x\":1}"),
        ("user[external_user_id]", "777"),
    ]);
    let (status, created) = call(&t, Method::POST, "/users.json", Some(&token), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let user = &created["user"];
    let id = user["id"].as_i64().unwrap();
    assert_eq!(user["login"], "hana");
    assert_eq!(user["user_tags"], "red,blue");
    assert_eq!(user["custom_data"], "{\"x\":1}");
    assert_eq!(user["external_user_id"], 777);
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());

    for (path, expect) in [
        (format!("/users/{id}.json?"), id),
        ("/users/by_login.json?login=hana".to_string(), id),
        (
            "/users/by_email.json?email=hana%40example.com".to_string(),
            id,
        ),
        ("/users/phone.json?phone=%2B100200".to_string(), id),
        ("/users/external/777.json".to_string(), id),
    ] {
        let (status, body) = call(&t, Method::GET, &path, Some(&token), None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["user"]["id"], expect, "{path}");
    }
    let (status, body) = call(
        &t,
        Method::GET,
        "/users/by_full_name.json?full_name=Hana%20H",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["total_entries"], 1);
    assert_eq!(body["items"][0]["user"]["id"], id);
    let (status, body) = call(
        &t,
        Method::GET,
        "/users/by_tags.json?tags[]=blue%2Cgreen",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["items"][0]["user"]["id"], id);
    let (_, body) = call(
        &t,
        Method::GET,
        "/users/by_tags.json?tags[]=re",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(body["total_entries"], 0, "tags match whole tags only");
    let (status, _) = call(
        &t,
        Method::GET,
        "/users/by_login.json?login=nobody",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&t, Method::GET, "/users/999999.json", Some(&token), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn sign_up_validation_changes_nothing() {
    let t = TestServer::start().await;
    let token = t.session(None).await;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("user[login]", "ivan"), ("user[password]", "short")],
            "password",
        ),
        (vec![("user[login]", "ivan")], "password"),
        (vec![("user[password]", "ivanpass12")], "base"),
        (
            vec![
                ("user[login]", "ivan"),
                ("user[password]", "ivanpass12"),
                ("user[email]", "not-an-email"),
            ],
            "email",
        ),
        (
            vec![
                ("user[login]", "ivan"),
                ("user[password]", "ivanpass12"),
                ("user[favourite]", "x"),
            ],
            "favourite",
        ),
        (
            vec![("user[login]", "iv"), ("user[password]", "ivanpass12")],
            "login",
        ),
        (
            vec![
                ("user[login]", "ivan"),
                ("user[password]", "ivanpass12"),
                ("user[full_name]", "Ivan\u{0}Evil"),
            ],
            "full_name",
        ),
        (
            vec![
                ("user[login]", "iv\u{1b}[2Jan"),
                ("user[password]", "ivanpass12"),
            ],
            "login",
        ),
        (
            vec![
                ("user[login]", "ivan"),
                ("user[password]", "ivanpass12"),
                ("user[blob_id]", "x"),
            ],
            "blob_id",
        ),
    ];
    for (pairs, field) in cases {
        let (status, body) = call(
            &t,
            Method::POST,
            "/users.json",
            Some(&token),
            Some(form(&pairs)),
        )
        .await;
        assert_eq!(status, 422, "{pairs:?}: {body}");
        assert!(body["errors"][field].is_array(), "{pairs:?}: {body}");
    }
    let (_, list) = call(&t, Method::GET, "/users.json", Some(&token), None).await;
    assert_eq!(list["total_entries"], 0, "no user was created by bad input");

    t.create_user("ivan", "ivanpass12", &[("email", "ivan@example.com")])
        .await;
    let duplicate = form(&[("user[login]", "ivan"), ("user[password]", "ivanpass12")]);
    let (status, body) = call(
        &t,
        Method::POST,
        "/users.json",
        Some(&token),
        Some(duplicate),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"]["login"][0], "has already been taken");
    let duplicate = form(&[
        ("user[login]", "ivan2"),
        ("user[password]", "ivanpass12"),
        ("user[email]", "ivan@example.com"),
    ]);
    let (status, body) = call(
        &t,
        Method::POST,
        "/users.json",
        Some(&token),
        Some(duplicate),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"]["email"][0], "has already been taken");
    let (_, list) = call(&t, Method::GET, "/users.json", Some(&token), None).await;
    assert_eq!(list["total_entries"], 1);
}

#[tokio::test]
async fn list_filters_order_and_pages() {
    let t = TestServer::start().await;
    let mut ids = Vec::new();
    for name in ["ann", "ben", "cid", "dan", "eve"] {
        ids.push(
            t.create_user(name, "password123", &[("full_name", &format!("{name} x"))])
                .await,
        );
    }
    let token = t.session(None).await;
    let get = |query: String| {
        let t = &t;
        let token = token.clone();
        async move {
            call(
                t,
                Method::GET,
                &format!("/users.json?{query}"),
                Some(&token),
                None,
            )
            .await
        }
    };
    let (status, body) = get(format!(
        "filter[]={}",
        encode_component(&format!("number id in {},{}", ids[0], ids[2]))
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["total_entries"], 2);
    // Two filters joined in one filter[] value, the declared types wrong as the SDK sends them.
    let (_, body) = get(format!(
        "filter[]={}",
        encode_component(&format!("string id gt {},string login ne dan", ids[1]))
    ))
    .await;
    let logins: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["user"]["login"].as_str().unwrap())
        .collect();
    assert_eq!(logins, vec!["cid", "eve"]);
    let (_, body) = get(format!(
        "order={}&per_page=2&page=2",
        encode_component("desc string id")
    ))
    .await;
    assert_eq!(body["current_page"], 2);
    assert_eq!(body["per_page"], 2);
    assert_eq!(body["total_entries"], 5);
    let logins: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["user"]["login"].as_str().unwrap())
        .collect();
    assert_eq!(logins, vec!["cid", "ben"]);
    let (_, body) = get(format!(
        "filter[]={}",
        encode_component(&format!("number id between {},{}", ids[1], ids[3]))
    ))
    .await;
    assert_eq!(body["total_entries"], 3);
    let (_, body) = get("per_page=1000".into()).await;
    assert_eq!(body["per_page"], 100, "per_page is capped");

    for bad in [
        "filter[]=nonsense",
        "filter[]=number%20password_hash%20eq%20x",
        "order=sideways",
        "page=0",
        "per_page=x",
        // An offset past what the database can take (it was a 500).
        "page=100000000000000000&per_page=100",
        "page=18446744073709551615",
    ] {
        let (status, body) = get(bad.into()).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
}

#[tokio::test]
async fn users_update_themselves_only_and_app_tokens_are_read_only() {
    let t = TestServer::start().await;
    let jane = t.create_user("jane", "janepass12", &[]).await;
    let kim = t.create_user("kim", "kimpass123", &[]).await;
    let jane_token = t.session(Some(("jane", "janepass12"))).await;
    let app_token = t.session(None).await;

    let update = form(&[("user[full_name]", "Jane J"), ("user[tag_list]", "a,b")]);
    let (status, body) = call(
        &t,
        Method::PUT,
        &format!("/users/{jane}.json"),
        Some(&jane_token),
        Some(update),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["full_name"], "Jane J");
    assert_eq!(body["user"]["user_tags"], "a,b");

    let update = form(&[("user[full_name]", "hacked")]);
    let (status, body) = call(
        &t,
        Method::PUT,
        &format!("/users/{kim}.json"),
        Some(&jane_token),
        Some(update.clone()),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = call(
        &t,
        Method::PUT,
        &format!("/users/{kim}.json"),
        Some(&app_token),
        Some(update),
    )
    .await;
    assert_eq!(status, 403, "application tokens are read-only");
    let (status, _) = call(
        &t,
        Method::DELETE,
        &format!("/users/{kim}.json"),
        Some(&jane_token),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &t,
        Method::DELETE,
        &format!("/users/{kim}.json"),
        Some(&app_token),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (_, body) = call(
        &t,
        Method::GET,
        &format!("/users/{kim}.json"),
        Some(&app_token),
        None,
    )
    .await;
    assert_eq!(body["user"]["full_name"], Value::Null, "kim is unchanged");

    let unknown = form(&[("user[nickname]", "jj")]);
    let (status, body) = call(
        &t,
        Method::PUT,
        &format!("/users/{jane}.json"),
        Some(&jane_token),
        Some(unknown),
    )
    .await;
    assert_eq!(status, 422);
    assert!(body["errors"]["nickname"].is_array());
}

#[tokio::test]
async fn password_change_needs_the_old_password() {
    let t = TestServer::start().await;
    let id = t.create_user("lena", "lenapass12", &[]).await;
    let token = t.session(Some(("lena", "lenapass12"))).await;
    let path = format!("/users/{id}.json");
    let without_old = form(&[("user[password]", "newpass123")]);
    let (status, body) = call(&t, Method::PUT, &path, Some(&token), Some(without_old)).await;
    assert_eq!(status, 422);
    assert!(body["errors"]["old_password"].is_array());
    let wrong_old = form(&[
        ("user[password]", "newpass123"),
        ("user[old_password]", "wrongpass1"),
    ]);
    assert_eq!(
        t.send(Method::PUT, &path, Some(&token), Some(wrong_old))
            .await
            .status(),
        422
    );
    let right = form(&[
        ("user[password]", "newpass123"),
        ("user[old_password]", "lenapass12"),
    ]);
    assert_eq!(
        t.send(Method::PUT, &path, Some(&token), Some(right))
            .await
            .status(),
        200
    );
    let old = t
        .post_form(
            "/session.json",
            None,
            &t.session_form(Some(("lena", "lenapass12"))),
        )
        .await;
    assert_eq!(old.status(), 401);
    t.session(Some(("lena", "newpass123"))).await;
}

#[tokio::test]
async fn deleting_yourself_ends_your_sessions() {
    let t = TestServer::start().await;
    let id = t.create_user("mia", "miapass123", &[]).await;
    let token = t.session(Some(("mia", "miapass123"))).await;
    let response = t
        .send(
            Method::DELETE,
            &format!("/users/{id}.json"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    let (status, body) = call(&t, Method::GET, "/session.json", Some(&token), None).await;
    assert_eq!(status, 401);
    assert_eq!(body["errors"][0], "Required session does not exist");
    let app_token = t.session(None).await;
    let (status, _) = call(
        &t,
        Method::GET,
        &format!("/users/{id}.json"),
        Some(&app_token),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_api_key_acts_as_account_owner() {
    let t = TestServer::start().await;
    let id = t.create_user("ned", "nedpass123", &[]).await;
    let owner = |method: Method, path: String, body: Option<String>| {
        let mut request = t
            .client
            .request(method, t.url(&path))
            .header("Authorization", format!("ApiKey {}", t.app.api_key))
            .header("Content-Type", "application/x-www-form-urlencoded");
        if let Some(body) = body {
            request = request.body(body);
        }
        request.send()
    };
    let update = form(&[
        ("user[full_name]", "Ned by owner"),
        ("user[password]", "ownerset12"),
    ]);
    let (status, body) = json(
        owner(Method::PUT, format!("/users/{id}.json"), Some(update))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["full_name"], "Ned by owner");
    t.session(Some(("ned", "ownerset12"))).await;
    let (status, _) = json(
        owner(Method::DELETE, format!("/users/{id}.json"), None)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let response = t
        .client
        .get(t.url("/users.json"))
        .header("Authorization", "ApiKey sbk_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn applications_never_see_each_others_users() {
    let t = TestServer::start().await;
    let other = switchboard::admin::create_app(&t.server.store, "other")
        .await
        .unwrap();
    let id = t.create_user("olga", "olgapass12", &[]).await;

    // The same login is free in the other application.
    let other_form = signed_session_form(
        &other,
        None,
        unix_now(),
        next_nonce(),
        switchboard::auth::signature::SignatureAlgorithm::Sha1,
    );
    let (status, body) = json(t.post_form("/session.json", None, &other_form).await).await;
    assert_eq!(status, 201);
    let other_token = body["session"]["token"].as_str().unwrap().to_string();
    let signup = form(&[("user[login]", "olga"), ("user[password]", "otherpass1")]);
    let (status, body) = call(
        &t,
        Method::POST,
        "/users.json",
        Some(&other_token),
        Some(signup),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let other_id = body["user"]["id"].as_i64().unwrap();
    assert_ne!(other_id, id);

    let (status, _) = call(
        &t,
        Method::GET,
        &format!("/users/{id}.json"),
        Some(&other_token),
        None,
    )
    .await;
    assert_eq!(status, 404, "app B cannot read app A's user by id");
    let (_, body) = call(
        &t,
        Method::GET,
        "/users/by_login.json?login=olga",
        Some(&other_token),
        None,
    )
    .await;
    assert_eq!(body["user"]["id"], other_id);
    let (_, body) = call(&t, Method::GET, "/users.json", Some(&other_token), None).await;
    assert_eq!(body["total_entries"], 1);
    // App A's password does not log in to app B's olga, and vice versa.
    let cross = signed_session_form(
        &other,
        Some(("olga", "olgapass12")),
        unix_now(),
        next_nonce(),
        switchboard::auth::signature::SignatureAlgorithm::Sha1,
    );
    assert_eq!(
        t.post_form("/session.json", None, &cross).await.status(),
        401
    );
    // App B's API key cannot touch app A's user.
    let response = t
        .client
        .delete(t.url(&format!("/users/{id}.json")))
        .header("Authorization", format!("ApiKey {}", other.api_key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let app_token = t.session(None).await;
    let (status, _) = call(
        &t,
        Method::GET,
        &format!("/users/{id}.json"),
        Some(&app_token),
        None,
    )
    .await;
    assert_eq!(status, 200, "app A's user still exists");
}

#[tokio::test]
async fn password_reset_checks_the_email() {
    let t = TestServer::start().await;
    t.create_user("pia", "piapass123", &[("email", "pia@example.com")])
        .await;
    let token = t.session(None).await;
    let ok = t
        .send(
            Method::GET,
            "/users/password/reset.json?email=pia%40example.com",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(ok.status(), 200);
    let missing = t
        .send(
            Method::GET,
            "/users/password/reset.json?email=nobody%40example.com",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(missing.status(), 404);
    let blank = t
        .send(
            Method::GET,
            "/users/password/reset.json",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(blank.status(), 422);
}
