//! Shared helpers for whole-server tests: a server on 127.0.0.1 port 0 with its own data dir,
//! an application, signed session requests, and throw-away PostgreSQL databases.
#![allow(dead_code)]

pub mod janus;
pub mod webrtc;
pub mod xmpp;

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use switchboard::admin::{self, AppCredentials};
use switchboard::auth::signature::{self, SignatureAlgorithm};
use switchboard::config::Config;
use switchboard::Server;

pub struct TestServer {
    pub server: Server,
    pub app: AppCredentials,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests(dir.path());
        adjust(&mut config);
        Self::start_in(dir, config).await
    }

    pub async fn start_in(dir: tempfile::TempDir, config: Config) -> TestServer {
        let server = Server::start(config).await.expect("server starts");
        let app = admin::create_app(&server.store, "test").await.expect("app");
        TestServer {
            server,
            app,
            client: client(),
            dir,
        }
    }

    /// Creates a user directly and returns its JID node (`{id}-{app}`).
    pub async fn xmpp_user(&self, login: &str, password: &str) -> String {
        let user = switchboard::admin::create_user(
            &self.server.store,
            switchboard::model::AppId(self.app.application_id),
            login,
            password,
            None,
            &[],
        )
        .await
        .expect("user");
        format!("{}-{}", user.id.0, self.app.application_id)
    }

    /// Logs `node` in over c2s (STARTTLS + PLAIN) and binds `resource`.
    pub async fn xmpp_login(
        &self,
        node: &str,
        password: &str,
        resource: Option<&str>,
    ) -> xmpp::XmppClient {
        xmpp::XmppClient::login(
            self.server.xmpp_addrs.tcp,
            &self.server.config.xmpp.domain,
            &self.server.tls.cert,
            node,
            password,
            resource,
        )
        .await
        .unwrap_or_else(|e| panic!("login of {node} failed: {e}"))
    }

    /// `https://127.0.0.1:PORT` of the REST API.
    pub fn base(&self) -> String {
        format!("https://{}", self.server.api_addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The form fields of a correctly signed `POST /session.json` for `app`.
    pub fn session_form(&self, user: Option<(&str, &str)>) -> Vec<(String, String)> {
        signed_session_form(
            &self.app,
            user,
            unix_now(),
            next_nonce(),
            SignatureAlgorithm::Sha1,
        )
    }

    /// `POST /session.json` for a user, correctly signed.
    pub async fn user_login(&self, login: &str, password: &str) -> reqwest::Response {
        self.post_form(
            "/session.json",
            None,
            &self.session_form(Some((login, password))),
        )
        .await
    }

    /// Creates a session (application or user) and returns its token.
    pub async fn session(&self, user: Option<(&str, &str)>) -> String {
        let response = self
            .post_form("/session.json", None, &self.session_form(user))
            .await;
        assert_eq!(response.status(), 201, "session create");
        let body: Value = response.json().await.unwrap();
        body["session"]["token"].as_str().unwrap().to_string()
    }

    pub async fn post_form(
        &self,
        path: &str,
        token: Option<&str>,
        form: &[(String, String)],
    ) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, token, Some(encode_form(form)))
            .await
    }

    /// Sends a request with an optional QB-Token and a form body (on any verb, as the SDK does).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        form: Option<String>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path)).header(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        );
        if let Some(token) = token {
            request = request.header("QB-Token", token);
        }
        if let Some(form) = form {
            request = request.body(form);
        }
        request.send().await.expect("request reaches the server")
    }

    /// The Prometheus text of the metrics listener.
    pub async fn metrics_text(&self) -> String {
        let addr = self.server.metrics_addr.expect("metrics listener");
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("metrics request reaches the server")
            .text()
            .await
            .expect("metrics body")
    }

    /// The value of one sample, named as exported with its labels
    /// (`switchboard_xmpp_connections{transport="tcp"}`); `None` when it is not exported.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = self.metrics_text().await;
        text.lines().find_map(|line| {
            let value = line.strip_prefix(sample)?.strip_prefix(' ')?;
            Some(value.trim().parse().expect("a sample value is a number"))
        })
    }

    /// Waits until the server's metric `sample` reads `value`.
    pub async fn wait_for_metric(&self, sample: &str, value: f64) {
        eventually(&format!("{sample} {value}"), || async move {
            self.metric(sample).await == Some(value)
        })
        .await;
    }

    /// The server's clock in Unix seconds, from the `Date` header of its health endpoint (the
    /// same process clock that stamps sessions and expires tokens).
    pub async fn server_clock(&self) -> i64 {
        let addr = self.server.metrics_addr.expect("metrics listener");
        let response = reqwest::get(format!("http://{addr}/health"))
            .await
            .expect("health request reaches the server");
        let date = response.headers()["date"]
            .to_str()
            .expect("an ASCII Date header")
            .to_string();
        parse_http_date(&date).unwrap_or_else(|| panic!("unparsable Date header {date:?}"))
    }

    /// Waits until the server's clock reads later than `unix` (seconds): for behaviour that
    /// depends on time passing on the server, such as a token's expiry, a request sent after
    /// this returns is handled at a later second than `unix`.
    pub async fn wait_for_server_clock_after(&self, unix: i64) {
        eventually(
            &format!("a server clock later than {unix}"),
            || async move { self.server_clock().await > unix },
        )
        .await;
    }

    /// Signs a user up with an application session and returns the user's id.
    pub async fn create_user(&self, login: &str, password: &str, extra: &[(&str, &str)]) -> i64 {
        let token = self.session(None).await;
        let mut form = vec![
            ("user[login]".to_string(), login.to_string()),
            ("user[password]".to_string(), password.to_string()),
        ];
        form.extend(
            extra
                .iter()
                .map(|(k, v)| (format!("user[{k}]"), v.to_string())),
        );
        let response = self.post_form("/users.json", Some(&token), &form).await;
        assert_eq!(
            response.status(),
            201,
            "user create: {:?}",
            response.text().await
        );
        let body: Value = response.json().await.unwrap();
        body["user"]["id"].as_i64().unwrap()
    }
}

/// How long [`eventually`] gives the server: generous, since a passing test never waits that
/// long and a failing one should not be mistaken for a slow machine.
pub const EVENTUALLY: Duration = Duration::from_secs(10);

/// Polls the server until `condition` holds, and fails the test if it does not within
/// [`EVENTUALLY`]. For what the server does in the background with no reply to wait for (a
/// session ending after its connection, a timer firing): each poll asks the server, and the
/// pause between polls only spaces them out; no test relies on it being long enough.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    while !condition().await {
        if tokio::time::Instant::now() >= deadline {
            panic!("the server never got to: {what} (polled for {EVENTUALLY:?})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Unix seconds of an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7).
pub fn parse_http_date(date: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut parts = date.split_whitespace().skip(1);
    let (day, month, year, time) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    switchboard::clock::parse_iso8601(&format!("{year}-{month:02}-{day} {time}"))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("reqwest client")
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Nonces unique within the test process, so tests never trip the replay guard by accident.
pub fn next_nonce() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static NEXT: AtomicI64 = AtomicI64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) % 10_000
}

pub fn signed_session_form(
    app: &AppCredentials,
    user: Option<(&str, &str)>,
    timestamp: i64,
    nonce: i64,
    algorithm: SignatureAlgorithm,
) -> Vec<(String, String)> {
    let mut form = vec![
        ("application_id".to_string(), app.application_id.to_string()),
        ("auth_key".to_string(), app.auth_key.clone()),
        ("nonce".to_string(), nonce.to_string()),
        ("timestamp".to_string(), timestamp.to_string()),
    ];
    if let Some((login, password)) = user {
        form.push(("user[login]".into(), login.into()));
        form.push(("user[password]".into(), password.into()));
    }
    let message = signature::string_to_sign(form.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    form.push((
        "signature".into(),
        signature::sign(algorithm, &app.auth_secret, &message),
    ));
    form
}

/// Percent-encodes like the SDK: `encodeURIComponent` on values, literal brackets in keys.
pub fn encode_form(form: &[(String, String)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", k, encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn encode_component(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Whether the PostgreSQL cases must run: `scripts/test` exports `SWITCHBOARD_REQUIRE_PG=1`, so
/// there a missing database fails them instead of skipping them. `SWITCHBOARD_INTEROP=1`, the
/// other mark of a full run (also exported by `scripts/test`), requires it too.
pub fn postgres_required() -> bool {
    ["SWITCHBOARD_REQUIRE_PG", "SWITCHBOARD_INTEROP"]
        .iter()
        .any(|name| std::env::var(name).as_deref() == Ok("1"))
}

/// The admin URL of the test PostgreSQL, if `scripts/test` started one. Without it the case
/// fails when [`postgres_required`], and is skipped loudly otherwise (plain `cargo test`).
pub fn postgres_admin_url(test: &str) -> Option<String> {
    match std::env::var("SWITCHBOARD_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if postgres_required() {
                panic!("{test}: SWITCHBOARD_TEST_PG_URL is not set, but PostgreSQL is required (SWITCHBOARD_REQUIRE_PG=1 or SWITCHBOARD_INTEROP=1)");
            }
            loud_skip(&format!("\n*** SKIPPED {test} on PostgreSQL: SWITCHBOARD_TEST_PG_URL is not set (scripts/test sets it) ***\n"));
            None
        }
    }
}

/// How long connecting to the test PostgreSQL may take: an address that drops packets must
/// fail the case, not hang it.
const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates an empty database for one test and returns its URL. An unreachable server fails
/// the case whatever the environment: a URL that is set names a database the run must use.
pub async fn fresh_postgres_db(admin_url: &str) -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("sb_{}", switchboard::auth::secrets::random_hex(8));
    let connect = sqlx::AnyConnection::connect(admin_url);
    let mut conn = match tokio::time::timeout(POSTGRES_CONNECT_TIMEOUT, connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => panic!("cannot connect to the test PostgreSQL (SWITCHBOARD_TEST_PG_URL={admin_url}): {error}"),
        Err(_) => panic!("no answer from the test PostgreSQL within {POSTGRES_CONNECT_TIMEOUT:?} (SWITCHBOARD_TEST_PG_URL={admin_url})"),
    };
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    conn.close().await.ok();
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url, |(base, _)| base);
    format!("{base}/{name}")
}

/// The interop tests' Python (`SWITCHBOARD_PYTHON`, a venv with `what`) and `tests/interop/py`,
/// or `None` (a loud skip, or a failure under `scripts/test`) when it is missing.
pub fn interop_python(test: &str, what: &str) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let python = std::env::var("SWITCHBOARD_PYTHON")
        .map(std::path::PathBuf::from)
        .ok();
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/py");
    let present = python.as_ref().is_some_and(|p| p.exists());
    let why = format!("SWITCHBOARD_PYTHON (a venv with {what}) is not set");
    if !interop_requirement(test, present, &why) {
        return None;
    }
    python.map(|p| (p, dir))
}

/// `tests/interop/js` (or `SWITCHBOARD_INTEROP_JS_DIR`) with npm `package` installed, node and
/// Chromium (`SWITCHBOARD_CHROMIUM`), or `None` (a loud skip, or a failure under
/// `scripts/test`) when one is missing.
pub fn interop_browser(test: &str, package: &str) -> Option<(std::path::PathBuf, String)> {
    let dir = std::env::var("SWITCHBOARD_INTEROP_JS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/js")
        });
    let chromium =
        std::env::var("SWITCHBOARD_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let present = node_ok
        && dir.join("node_modules").join(package).is_dir()
        && std::path::Path::new(&chromium).exists();
    let why = format!("node, {package} or chromium is missing");
    if !interop_requirement(test, present, &why) {
        return None;
    }
    Some((dir, chromium))
}

/// Where an interop client lives, or `None` (a loud skip) when it is missing and
/// `SWITCHBOARD_INTEROP` is not `1` (under `scripts/test` a missing client fails the test).
pub fn interop_requirement(test: &str, present: bool, why: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var("SWITCHBOARD_INTEROP").as_deref() == Ok("1") {
        panic!("{test}: {why}");
    }
    loud_skip(&format!(
        "\n*** SKIPPED {test}: {why} (scripts/test installs it) ***\n"
    ));
    false
}

/// Runs a third-party client script, returning (success, stdout, stderr tail).
pub async fn run_client(
    program: &std::path::Path,
    args: &[&str],
    dir: &std::path::Path,
    env: &[(&str, String)],
    timeout: std::time::Duration,
) -> (bool, String, String) {
    use tokio::io::AsyncReadExt;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = tokio::spawn(async move {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        (out, err)
    });
    let status = tokio::time::timeout(timeout, child.wait()).await;
    let ok = matches!(status, Ok(Ok(s)) if s.success());
    if status.is_err() {
        let _ = child.kill().await;
    }
    let (out, err) = reader.await.unwrap_or_default();
    let tail: Vec<&str> = err.lines().rev().take(60).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    (ok, out, tail)
}

/// Prints a skip notice that `cargo test` shows even for a passing test: libtest captures the
/// `print!` macros, not direct writes to the stderr handle.
pub fn loud_skip(message: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(message.as_bytes());
}
