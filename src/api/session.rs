//! `/session.json` and `/login.json` (REST reference §7, §8.1).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{extract::State, Json};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::users::user_json;
use super::{empty_ok, expiry_value, ApiError, AppState, Params, Source, EXPIRY_HEADER};
use crate::auth::{signature, Caller, LoginName, Principal};
use crate::clock;
use crate::model::{AppId, Session};

/// `POST /session.json`: an application session, or a user session when `user[…]` is given.
pub async fn create(
    State(state): State<AppState>,
    Source(source): Source,
    params: Params,
) -> Result<Response, ApiError> {
    let now = clock::unix_now();
    let mut missing = Vec::new();
    for field in [
        "application_id",
        "auth_key",
        "nonce",
        "timestamp",
        "signature",
    ] {
        if params.get(field).is_none_or(str::is_empty) {
            missing.push((field.to_string(), "can't be blank".to_string()));
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::Invalid(missing));
    }
    let field = |name: &str| params.get(name).unwrap_or_default();
    let app_id: i64 = field("application_id")
        .parse()
        .map_err(|_| ApiError::invalid("application_id", "is not a number"))?;
    let timestamp: i64 = field("timestamp")
        .parse()
        .map_err(|_| ApiError::invalid("timestamp", "is not a number"))?;
    let nonce_text = field("nonce");
    let nonce: i64 = nonce_text
        .parse()
        .map_err(|_| ApiError::invalid("nonce", "is not a number"))?;

    let app = state.store.app(AppId(app_id)).await?;
    let app = match app {
        Some(app) if bool::from(app.auth_key.as_bytes().ct_eq(field("auth_key").as_bytes())) => app,
        _ => return Err(ApiError::invalid("base", "Unknown application or auth_key")),
    };
    let window = state.config.api.signature_window_s as i64;
    if !timestamp_within(now, timestamp, window) {
        return Err(ApiError::invalid(
            "base",
            "Timestamp is out of the allowed window",
        ));
    }
    let message = signature::string_to_sign(params.pairs());
    if !signature::verify(&app.auth_secret, &message, field("signature")) {
        return Err(ApiError::invalid("base", "Unexpected signature"));
    }
    if params.get("provider").is_some() || params.has_group("keys") {
        return Err(ApiError::invalid(
            "provider",
            "social and custom identity login is not supported",
        ));
    }
    let name = login_name(params.group("user"));
    // The replay guard is scoped per application and login (REST reference §7.1): the SDK's
    // nonce has only 10,000 values, so unrelated users may share a second and a nonce.
    let scope = name
        .as_ref()
        .map_or(String::new(), |(name, _)| name.scope());
    if !state
        .store
        .record_nonce(app.id, &scope, timestamp, nonce_text)
        .await?
    {
        return Err(ApiError::invalid(
            "base",
            "Timestamp and nonce have already been used",
        ));
    }
    let user = match name {
        Some((name, password)) => {
            let password =
                password.ok_or_else(|| ApiError::invalid("password", "can't be blank"))?;
            Some(
                state
                    .auth
                    .check_password(app.id, &name, &password, source, now)
                    .await?,
            )
        }
        None => None,
    };
    let (session, token) = state
        .auth
        .open_session(&app, user.as_ref().map(|u| u.id), nonce, timestamp, now)
        .await?;
    let mut response = (
        StatusCode::CREATED,
        Json(json!({ "session": session_json(&session, &token) })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(EXPIRY_HEADER, expiry_value(session.expires_at));
    Ok(response)
}

/// `GET /session.json`: the caller's session, wrapped.
pub async fn show(caller: Caller, headers: axum::http::HeaderMap) -> Result<Json<Value>, ApiError> {
    let session = caller.session.as_ref().ok_or_else(ApiError::no_session)?;
    let token = headers
        .get("qb-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Ok(Json(
        json!({ "session": session_json(session, token.trim()) }),
    ))
}

/// `DELETE /session.json`.
pub async fn destroy(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let session = caller.session.as_ref().ok_or_else(ApiError::no_session)?;
    state.auth.destroy_session(session).await?;
    Ok(empty_ok())
}

/// `POST /login.json`: binds a user to the caller's session.
pub async fn login(
    State(state): State<AppState>,
    Source(source): Source,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let now = clock::unix_now();
    let session = caller.session.as_ref().ok_or_else(ApiError::no_session)?;
    if params.get("provider").is_some() || params.has_group("keys") {
        return Err(ApiError::invalid(
            "provider",
            "social and custom identity login is not supported",
        ));
    }
    // The SDK sends the fields top-level; `user[login]` is accepted too.
    let top = params.pairs().filter(|(k, _)| !k.contains('['));
    let (name, password) = login_name(top)
        .or_else(|| login_name(params.group("user")))
        .ok_or_else(|| ApiError::invalid("login", "can't be blank"))?;
    let password = password.ok_or_else(|| ApiError::invalid("password", "can't be blank"))?;
    let user = state
        .auth
        .check_password(caller.app.id, &name, &password, source, now)
        .await?;
    state
        .auth
        .set_session_user(session, Some(user.id), now)
        .await?;
    Ok(Json(json!({ "user": user_json(&user) })))
}

/// `DELETE /login.json`: the session goes back to being an application session.
pub async fn logout(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let session = caller.session.as_ref().ok_or_else(ApiError::no_session)?;
    if caller.principal == Principal::Application {
        return Err(ApiError::Forbidden(
            "No user is logged in to this session".into(),
        ));
    }
    state
        .auth
        .set_session_user(session, None, clock::unix_now())
        .await?;
    Ok(empty_ok())
}

impl LoginName {
    fn scope(&self) -> String {
        match self {
            LoginName::Login(login) => format!("login:{login}"),
            LoginName::Email(email) => format!("email:{email}"),
        }
    }
}

/// Reads `login` or `email` and `password` from `(key, value)` pairs.
fn login_name<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
) -> Option<(LoginName, Option<String>)> {
    let (mut name, mut password) = (None, None);
    for (key, value) in pairs {
        match key {
            "login" if !value.is_empty() => name = Some(LoginName::Login(value.to_string())),
            "email" if !value.is_empty() && name.is_none() => {
                name = Some(LoginName::Email(value.to_string()))
            }
            "password" => password = Some(value.to_string()),
            _ => {}
        }
    }
    name.map(|name| (name, password))
}

/// The session object of QuickBlox responses (REST reference §7.4).
fn session_json(session: &Session, token: &str) -> Value {
    json!({
        "_id": format!("{:024x}", session.id),
        "application_id": session.app_id.0,
        "created_at": clock::iso8601(session.created_at),
        "id": session.id,
        "nonce": session.nonce,
        "token": token,
        "ts": session.ts,
        "updated_at": clock::iso8601(session.updated_at),
        "user_id": session.user_id.map_or(0, |u| u.0),
    })
}

/// Whether a signature's `timestamp` is within `window` seconds of `now`. Checked: the
/// difference overflows for timestamps near `i64::MIN`, and a wrapped one would pass.
pub fn timestamp_within(now: i64, timestamp: i64, window: i64) -> bool {
    now.checked_sub(timestamp)
        .map(i64::unsigned_abs)
        .is_some_and(|skew| skew <= window.unsigned_abs())
}
