//! The QuickBlox-compatible REST API (axum), as the real SDK calls it
//! (`shared/reference/quickblox-rest.md`).
//!
//! Every request passes [`authenticate`], which resolves `QB-Token` (or `Authorization: ApiKey`)
//! once and stamps `QB-Token-ExpirationDate` on the response, and [`track`], which records
//! Prometheus metrics by route template. Handlers take a [`Caller`] when they need a session,
//! and [`Params`] for the decoded form/JSON/query parameters.

pub mod dialogs;
pub mod error;
pub mod messages;
pub mod params;
pub mod session;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::auth::{Auth, AuthError, Caller};
use crate::clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Store;
pub use error::ApiError;
pub use params::Params;

/// `QB-Token-ExpirationDate`, on every response to a request with a live session.
pub const EXPIRY_HEADER: HeaderName = HeaderName::from_static("qb-token-expirationdate");
const TOKEN_HEADER: &str = "qb-token";

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    pub chat: Arc<crate::chat::Chat>,
}

/// The REST router with its middleware.
pub fn router(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ])
        .expose_headers([EXPIRY_HEADER])
        .max_age(std::time::Duration::from_secs(3600));
    let routes = Router::new()
        .route(
            "/session.json",
            get(session::show)
                .post(session::create)
                .delete(session::destroy),
        )
        .route(
            "/login.json",
            axum::routing::post(session::login).delete(session::logout),
        )
        .route("/users.json", get(users::list).post(users::create))
        .route("/users/by_login.json", get(users::by_login))
        .route("/users/by_email.json", get(users::by_email))
        .route("/users/phone.json", get(users::by_phone))
        .route("/users/by_phone.json", get(users::by_phone))
        .route("/users/by_full_name.json", get(users::by_full_name))
        .route("/users/by_facebook_id.json", get(users::by_facebook_id))
        .route("/users/by_twitter_id.json", get(users::by_twitter_id))
        .route("/users/by_tags.json", get(users::by_tags))
        .route("/users/password/reset.json", get(users::reset_password))
        .route(
            "/users/external/{file}",
            get(users::show_external).delete(users::delete_external),
        )
        .route(
            "/users/{file}",
            get(users::show).put(users::update).delete(users::delete),
        )
        .route(
            "/chat/Dialog.json",
            get(dialogs::list).post(dialogs::create),
        )
        .route("/chat/Dialog", get(dialogs::list).post(dialogs::create))
        .route(
            "/chat/Dialog/{id}/notifications.json",
            get(dialogs::notifications).put(dialogs::set_notifications),
        )
        .route(
            "/chat/Dialog/{file}",
            axum::routing::put(dialogs::update).delete(dialogs::delete),
        )
        .route(
            "/chat/Message.json",
            get(messages::list)
                .post(messages::create)
                .put(messages::update),
        )
        .route(
            "/chat/Message",
            get(messages::list)
                .post(messages::create)
                .put(messages::update),
        )
        .route("/chat/Message/unread.json", get(messages::unread))
        .route("/chat/Message/unread", get(messages::unread))
        .route(
            "/chat/Message/{file}",
            axum::routing::put(messages::update).delete(messages::delete),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(cors)
        .with_state(state.clone());
    let prefix = state.config.api.path_prefix.trim_end_matches('/');
    if prefix.is_empty() {
        routes
    } else {
        Router::new().nest(prefix, routes).fallback(not_found)
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Not found".into())
}

/// The outcome of reading a request's credentials; put in the request extensions.
#[derive(Clone)]
struct Authenticated(Option<Result<Caller, ApiErrorKind>>);

/// `ApiError` is not `Clone`; this is what an authentication failure can be.
#[derive(Clone, Copy)]
enum ApiErrorKind {
    NoSession,
    Internal,
}

async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let now = clock::unix_now();
    let token = request
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok());
    let api_key = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("ApiKey "));
    let outcome = match (token, api_key) {
        (Some(token), _) if !token.is_empty() => {
            Some(state.auth.authenticate_token(token.trim(), now).await)
        }
        (_, Some(key)) => Some(state.auth.authenticate_api_key(key.trim()).await),
        _ => None,
    };
    let outcome = outcome.map(|result| {
        result.map_err(|error| match error {
            AuthError::Store(error) => {
                tracing::error!(%error, "session lookup failed");
                ApiErrorKind::Internal
            }
            _ => ApiErrorKind::NoSession,
        })
    });
    let expires_at = outcome
        .as_ref()
        .and_then(|o| o.as_ref().ok())
        .and_then(Caller::expires_at);
    request.extensions_mut().insert(Authenticated(outcome));
    let mut response = next.run(request).await;
    if let Some(expires_at) = expires_at {
        if !response.headers().contains_key(&EXPIRY_HEADER) {
            response
                .headers_mut()
                .insert(EXPIRY_HEADER, expiry_value(expires_at));
        }
    }
    response
}

/// The header value for an expiry instant.
pub fn expiry_value(expires_at: i64) -> HeaderValue {
    HeaderValue::from_str(&clock::header_date(expires_at))
        .expect("a formatted date is a valid header value")
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Caller, ApiError> {
        match parts.extensions.get::<Authenticated>() {
            Some(Authenticated(Some(Ok(caller)))) => Ok(caller.clone()),
            Some(Authenticated(Some(Err(ApiErrorKind::Internal)))) => {
                Err(ApiError::Internal("session lookup failed".into()))
            }
            Some(Authenticated(Some(Err(ApiErrorKind::NoSession)))) => Err(ApiError::no_session()),
            _ => Err(ApiError::Unauthorized("Token is required".into())),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::NoSession => ApiError::no_session(),
            AuthError::BadCredentials => ApiError::Unauthorized("Unauthorized".into()),
            AuthError::Throttled(_) => {
                ApiError::TooManyRequests("Too many login attempts, try again later".into())
            }
            AuthError::Busy => {
                ApiError::TooManyRequests("The server is busy, try again later".into())
            }
            AuthError::Store(error) => error.into(),
        }
    }
}

/// The client's address, as the accept loop recorded it.
pub struct Source(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Source, Self::Rejection> {
        Ok(Source(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().clone();
    let response = next.run(request).await;
    state.metrics.observe_http(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// 200 with an empty JSON object, for the calls the SDK reads as text (REST reference §5.1):
/// any body works for it, and JSON keeps curl users and proxies happy. Never 204.
pub fn empty_ok() -> Response {
    (
        axum::http::StatusCode::OK,
        axum::Json(serde_json::json!({})),
    )
        .into_response()
}
