//! Interop: the real QuickBlox JS SDK (npm `quickblox@2.23.0`) in Node drives the REST API
//! (`tests/interop/js/rest_sdk.js`): sessions, login, users CRUD and lookups, permission and
//! expiry errors in the SDK's own error shape.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{loud_skip, TestServer};
use tokio::io::AsyncReadExt;

/// The folder with `node_modules/quickblox`, or `None` (a loud skip) when it is not installed
/// and `SWITCHBOARD_INTEROP` is not `1`.
fn js_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var("SWITCHBOARD_INTEROP_JS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/js"));
    let have_node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if have_node && dir.join("node_modules/quickblox").is_dir() {
        return Some(dir);
    }
    let why = format!(
        "node or {}/node_modules/quickblox is missing (run scripts/test)",
        dir.display()
    );
    if std::env::var("SWITCHBOARD_INTEROP").as_deref() == Ok("1") {
        panic!("{test}: {why}");
    }
    loud_skip(&format!("\n*** SKIPPED {test}: {why} ***\n"));
    None
}

#[tokio::test]
async fn quickblox_js_sdk_drives_sessions_and_users() {
    let Some(dir) = js_dir("quickblox_js_sdk_drives_sessions_and_users") else {
        return;
    };
    let t = TestServer::start().await;
    let mut child = tokio::process::Command::new("node")
        .arg(dir.join("rest_sdk.js"))
        .current_dir(&dir)
        .env("SB_API", t.server.api_addr.to_string())
        .env("SB_CHAT", &t.server.config.xmpp.domain)
        .env("SB_APP_ID", t.app.application_id.to_string())
        .env("SB_AUTH_KEY", &t.app.auth_key)
        .env("SB_AUTH_SECRET", &t.app.auth_secret)
        .env("SB_ACCOUNT_KEY", &t.app.account_key)
        // The server's certificate is self-signed; trust exactly that one.
        .env("NODE_EXTRA_CA_CERTS", &t.server.tls.cert)
        .env("NODE_TLS_REJECT_UNAUTHORIZED", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("the SDK script finishes within 120 s")
        .unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    stdout.read_to_string(&mut out).await.unwrap();
    stderr.read_to_string(&mut err).await.unwrap();
    println!("{out}");
    assert!(
        status.success() && out.contains("ALL OK"),
        "SDK script failed ({status}):\n{out}\n--- stderr (tail) ---\n{}",
        err.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for step in [
        "app_session",
        "wrong_secret",
        "login",
        "update_other_forbidden",
        "logout_destroy",
        "delete_self",
    ] {
        assert!(
            out.contains(&format!("STEP {step} ok")),
            "step {step} missing:\n{out}"
        );
    }
}
