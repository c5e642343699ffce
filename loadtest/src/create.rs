//! `--create N`: signs up N users on Switchboard through its QuickBlox REST API (reference
//! §7: an application session signed with HMAC-SHA1, then `POST /users.json` per user) and
//! returns them as users-file entries with JIDs `{id}-{application_id}@{domain}`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::Sha1;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::users::User;

/// Parallel sign-ups: the server hashes each password (argon2), so more buys nothing.
const CREATE_CONCURRENCY: usize = 4;

/// The application credentials printed by `switchboard app create --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCredentials {
    /// `application_id`.
    pub application_id: i64,
    /// `auth_key`.
    pub auth_key: String,
    /// `auth_secret`, the HMAC key of session signatures.
    pub auth_secret: String,
}

impl AppCredentials {
    /// Reads the JSON file.
    pub fn read(path: &Path) -> anyhow::Result<AppCredentials> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read app JSON {}", path.display()))?;
        AppCredentials::parse(&text).with_context(|| format!("in app JSON {}", path.display()))
    }

    /// Parses `{"application_id": 42, "auth_key": "…", "auth_secret": "…", …}`.
    pub fn parse(text: &str) -> anyhow::Result<AppCredentials> {
        let json: Value = serde_json::from_str(text).context("not JSON")?;
        let text_field = |name: &str| {
            json[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("missing string {name:?}"))
        };
        let application_id = match &json["application_id"] {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| anyhow!("missing integer \"application_id\""))?;
        Ok(AppCredentials {
            application_id,
            auth_key: text_field("auth_key")?,
            auth_secret: text_field("auth_secret")?,
        })
    }
}

/// Creates `count` users and returns them in creation order, with their logins.
pub async fn create_users(
    api: &str,
    app: &AppCredentials,
    count: usize,
    domain: &str,
    accept_any_certificate: bool,
) -> anyhow::Result<Vec<(User, String)>> {
    let api = api.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(accept_any_certificate)
        .timeout(Duration::from_secs(30))
        .build()
        .context("HTTP client")?;
    let token = open_app_session(&client, &api, app).await?;

    let stamp = unix_now();
    let limit = Arc::new(Semaphore::new(CREATE_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for index in 0..count {
        let (client, api, token, limit) =
            (client.clone(), api.clone(), token.clone(), limit.clone());
        let login = format!("lt{stamp}u{index}");
        let password = random_password()?;
        tasks.spawn(async move {
            let _permit = limit
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let id = create_user(&client, &api, &token, &login, &password).await;
            (index, id.map(|id| (id, password, login)))
        });
    }
    let mut created = vec![None; count];
    while let Some(joined) = tasks.join_next().await {
        let (index, result) = joined.context("user creation task")?;
        let (id, password, login) = result?;
        created[index] = Some((
            User {
                jid: format!("{id}-{}@{domain}", app.application_id),
                password,
            },
            login,
        ));
    }
    Ok(created.into_iter().flatten().collect())
}

/// Creates a group dialog (type 2) for every `room_size` consecutive users, owned by the
/// first of them (who signs in for it), and returns the rooms' JIDs (`xmpp_room_jid`).
pub async fn create_rooms(
    api: &str,
    app: &AppCredentials,
    users: &[(User, String)],
    room_size: usize,
    accept_any_certificate: bool,
) -> anyhow::Result<Vec<String>> {
    let api = api.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(accept_any_certificate)
        .timeout(Duration::from_secs(30))
        .build()
        .context("HTTP client")?;
    let mut rooms = Vec::new();
    for group in users.chunks(room_size).filter(|g| g.len() == room_size) {
        let (owner, login) = &group[0];
        let token = open_session(&client, &api, app, Some((login, &owner.password))).await?;
        let occupants: Vec<String> = group[1..]
            .iter()
            .map(|(user, _)| {
                user.node()
                    .split('-')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        let name = format!("load room {}", rooms.len());
        let body = create_dialog(&client, &api, &token, &name, &occupants).await?;
        let url = format!("{api}/chat/Dialog.json");
        let room = body["xmpp_room_jid"]
            .as_str()
            .ok_or_else(|| anyhow!("POST {url}: no xmpp_room_jid in {body}"))?;
        rooms.push(room.to_string());
    }
    Ok(rooms)
}

/// A conference seat: the dialog (the room id), the user (the publisher id) and their session
/// token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceSeat {
    pub dialog: String,
    pub user: i64,
    pub token: String,
}

/// For the SFU's QuickBlox mode: `rooms` group dialogs of `participants` new users each (the
/// first one owns it), and every user's session token, room by room.
pub async fn create_conference_seats(
    api: &str,
    app: &AppCredentials,
    rooms: usize,
    participants: usize,
    accept_any_certificate: bool,
) -> anyhow::Result<Vec<ConferenceSeat>> {
    let users = create_users(
        api,
        app,
        rooms * participants,
        "localhost",
        accept_any_certificate,
    )
    .await?;
    let api = api.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(accept_any_certificate)
        .timeout(Duration::from_secs(30))
        .build()
        .context("HTTP client")?;
    let id_of = |user: &User| -> anyhow::Result<i64> {
        let node = user.node();
        node.split('-')
            .next()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| anyhow!("no user id in {node}"))
    };
    let mut seats = Vec::with_capacity(users.len());
    for (room, group) in users.chunks(participants).enumerate() {
        let mut tokens = Vec::with_capacity(group.len());
        for (user, login) in group {
            tokens.push(open_session(&client, &api, app, Some((login, &user.password))).await?);
        }
        let occupants: Vec<String> = group[1..]
            .iter()
            .map(|(user, _)| id_of(user).map(|id| id.to_string()))
            .collect::<anyhow::Result<_>>()?;
        let name = format!("load conference {room}");
        let body = create_dialog(&client, &api, &tokens[0], &name, &occupants).await?;
        let dialog = body["_id"]
            .as_str()
            .ok_or_else(|| anyhow!("POST {api}/chat/Dialog.json: no _id in {body}"))?;
        for ((user, _), token) in group.iter().zip(tokens) {
            seats.push(ConferenceSeat {
                dialog: dialog.to_string(),
                user: id_of(user)?,
                token,
            });
        }
    }
    Ok(seats)
}

/// A group dialog (type 2) made by the holder of `token` with `occupants` (user ids).
async fn create_dialog(
    client: &reqwest::Client,
    api: &str,
    token: &str,
    name: &str,
    occupants: &[String],
) -> anyhow::Result<Value> {
    let url = format!("{api}/chat/Dialog.json");
    let occupants = occupants.join(",");
    let form = [
        ("type", "2"),
        ("name", name),
        ("occupants_ids", occupants.as_str()),
    ];
    post(
        client.post(&url).header("QB-Token", token).form(&form),
        &url,
    )
    .await
}

/// The signature of a session request (reference §7.2): every field but `signature` as
/// `key=value` with raw values, sorted as JavaScript sorts strings (by UTF-16 code unit),
/// joined with `&`, HMAC-SHA1 with the auth secret, lower-case hex.
pub fn signature(fields: &[(&str, &str)], secret: &str) -> String {
    let mut pairs: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(pairs.join("&").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn open_app_session(
    client: &reqwest::Client,
    api: &str,
    app: &AppCredentials,
) -> anyhow::Result<String> {
    open_session(client, api, app, None).await
}

/// A signed session, of the application or (with a login and password) of a user.
async fn open_session(
    client: &reqwest::Client,
    api: &str,
    app: &AppCredentials,
    user: Option<(&str, &str)>,
) -> anyhow::Result<String> {
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let application_id = app.application_id.to_string();
    let nonce = ((unix_now() + NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
        % 1_000_000)
        .to_string();
    let timestamp = unix_now().to_string();
    let mut fields = vec![
        ("application_id", application_id.as_str()),
        ("auth_key", app.auth_key.as_str()),
        ("nonce", nonce.as_str()),
        ("timestamp", timestamp.as_str()),
    ];
    if let Some((login, password)) = user {
        fields.push(("user[login]", login));
        fields.push(("user[password]", password));
    }
    let signature = signature(&fields, &app.auth_secret);
    fields.push(("signature", &signature));
    let url = format!("{api}/session.json");
    let body = post(client.post(&url).form(&fields), &url).await?;
    body["session"]["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("POST {url}: no session.token in {body}"))
}

async fn create_user(
    client: &reqwest::Client,
    api: &str,
    token: &str,
    login: &str,
    password: &str,
) -> anyhow::Result<i64> {
    let url = format!("{api}/users.json");
    let form = [("user[login]", login), ("user[password]", password)];
    let request = client.post(&url).header("QB-Token", token).form(&form);
    let body = post(request, &url).await?;
    body["user"]["id"]
        .as_i64()
        .ok_or_else(|| anyhow!("POST {url}: no user.id in {body}"))
}

async fn post(request: reqwest::RequestBuilder, url: &str) -> anyhow::Result<Value> {
    let response = request
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("POST {url}: reading the response"))?;
    if !status.is_success() {
        bail!(
            "POST {url}: {status}: {}",
            String::from_utf8_lossy(&bytes).trim()
        );
    }
    serde_json::from_slice(&bytes).with_context(|| format!("POST {url}: response is not JSON"))
}

fn random_password() -> anyhow::Result<String> {
    use std::io::Read;

    let mut bytes = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_reference_vector() {
        // Reference §7.3.
        let fields = [
            ("user[password]", "p@ss w&rd"),
            ("application_id", "42"),
            ("nonce", "4936"),
            ("user[login]", "u1"),
            ("auth_key", "AUTHKEY"),
            ("timestamp", "1795313504"),
        ];
        assert_eq!(
            signature(&fields, "AUTHSECRET"),
            "76a59170c5219f843a9dce6ab79de4a95aab4ba0"
        );
    }

    #[test]
    fn app_json_from_switchboard_app_create() {
        let text = r#"{"application_id":3,"auth_key":"k","auth_secret":"s","account_key":"a","api_key":"x"}"#;
        assert_eq!(
            AppCredentials::parse(text).unwrap(),
            AppCredentials {
                application_id: 3,
                auth_key: "k".into(),
                auth_secret: "s".into()
            }
        );
        assert!(AppCredentials::parse(r#"{"application_id":3}"#).is_err());
        assert!(AppCredentials::parse("nope").is_err());
    }

    #[test]
    fn passwords_are_random_hex() {
        let (a, b) = (random_password().unwrap(), random_password().unwrap());
        assert_eq!(a.len(), 24);
        assert_ne!(a, b);
    }
}
