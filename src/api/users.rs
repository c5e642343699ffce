//! `/users…` (REST reference §8.2, §10.1) with the permission table of seed 000: anyone with a
//! session may sign a user up and read users; a user updates and deletes only themselves; the
//! account owner (API key) manages every user of the application.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{empty_ok, ApiError, AppState, Params};
use crate::auth::{Caller, Principal};
use crate::clock;
use crate::model::{
    FieldKind, FilterOp, FilterValue, User, UserField, UserFilter, UserId, UserQuery,
};

/// The user object of QuickBlox responses.
pub fn user_json(user: &User) -> Value {
    json!({
        "id": user.id.0,
        "full_name": user.full_name,
        "email": user.email,
        "login": user.login,
        "phone": user.phone,
        "website": user.website,
        "created_at": clock::iso8601(user.created_at),
        "updated_at": clock::iso8601(user.updated_at),
        "last_request_at": user.last_request_at.map(clock::iso8601),
        "external_user_id": user.external_user_id.as_ref().map(|id| match id.parse::<i64>() {
            Ok(n) => json!(n),
            Err(_) => json!(id),
        }),
        "facebook_id": user.facebook_id,
        "twitter_id": user.twitter_id,
        "twitter_digits_id": user.twitter_digits_id,
        "blob_id": user.blob_id,
        "custom_data": user.custom_data,
        "user_tags": if user.tags.is_empty() { Value::Null } else { json!(user.tags.join(",")) },
    })
}

fn wrapped(user: &User) -> Value {
    json!({ "user": user_json(user) })
}

/// `POST /users.json`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let now = clock::unix_now();
    if !params.has_group("user") {
        return Err(ApiError::invalid("user", "can't be blank"));
    }
    let mut user = User {
        app_id: caller.app.id,
        created_at: now,
        updated_at: now,
        ..User::default()
    };
    let password = apply_fields(&mut user, &params, true)?;
    let password = password.ok_or_else(|| ApiError::invalid("password", "can't be blank"))?;
    if user.login.is_none() && user.email.is_none() {
        return Err(ApiError::invalid("base", "login or email is required"));
    }
    user.password_hash = hash(&state, &password).await?;
    let user = state.store.create_user(&user).await?;
    tracing::info!(app = %user.app_id, user = %user.id, "user created");
    Ok((StatusCode::CREATED, Json(wrapped(&user))).into_response())
}

/// `PUT /users/{id}.json`.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(file): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let id = id_from_file(&file)?;
    may_modify(&caller, id)?;
    let mut user = state
        .store
        .user(caller.app.id, id)
        .await?
        .ok_or_else(user_not_found)?;
    let original = user.clone();
    let password = apply_fields(&mut user, &params, false)?;
    if let Some(password) = password {
        if !caller.is_owner() {
            let old = params
                .group("user")
                .find(|(k, _)| *k == "old_password")
                .map(|(_, v)| v.to_string())
                .ok_or_else(|| ApiError::invalid("old_password", "can't be blank"))?;
            if !state.auth.password_matches(&old, &user.password_hash).await {
                return Err(ApiError::invalid("old_password", "is incorrect"));
            }
        }
        user.password_hash = hash(&state, &password).await?;
    }
    if user != original {
        user.updated_at = clock::unix_now();
        if !state.store.update_user(&user).await? {
            return Err(user_not_found());
        }
    }
    Ok(Json(wrapped(&user)))
}

/// `DELETE /users/{id}.json`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let id = id_from_file(&file)?;
    may_modify(&caller, id)?;
    if !state.auth.delete_user(caller.app.id, id).await? {
        return Err(user_not_found());
    }
    tracing::info!(app = %caller.app.id, user = %id, "user deleted");
    Ok(empty_ok())
}

/// `GET /users/{id}.json`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(file): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = id_from_file(&file)?;
    let user = state
        .store
        .user(caller.app.id, id)
        .await?
        .ok_or_else(user_not_found)?;
    Ok(Json(wrapped(&user)))
}

/// `GET /users/external/{id}.json`.
pub async fn show_external(
    State(state): State<AppState>,
    caller: Caller,
    Path(file): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let external = external_from_file(&file)?;
    let user = state
        .store
        .user_by(
            caller.app.id,
            UserField::ExternalUserId,
            &FilterValue::Text(external),
        )
        .await?
        .ok_or_else(user_not_found)?;
    Ok(Json(wrapped(&user)))
}

/// `DELETE /users/external/{id}.json`.
pub async fn delete_external(
    State(state): State<AppState>,
    caller: Caller,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let external = external_from_file(&file)?;
    let user = state
        .store
        .user_by(
            caller.app.id,
            UserField::ExternalUserId,
            &FilterValue::Text(external),
        )
        .await?
        .ok_or_else(user_not_found)?;
    may_modify(&caller, user.id)?;
    state.auth.delete_user(caller.app.id, user.id).await?;
    Ok(empty_ok())
}

pub async fn by_login(
    state: State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    lookup(state, caller, params, "login", UserField::Login).await
}

pub async fn by_email(
    state: State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    lookup(state, caller, params, "email", UserField::Email).await
}

pub async fn by_phone(
    state: State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    lookup(state, caller, params, "phone", UserField::Phone).await
}

pub async fn by_facebook_id(
    state: State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    lookup(state, caller, params, "facebook_id", UserField::FacebookId).await
}

pub async fn by_twitter_id(
    state: State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    lookup(state, caller, params, "twitter_id", UserField::TwitterId).await
}

async fn lookup(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
    param: &str,
    field: UserField,
) -> Result<Json<Value>, ApiError> {
    let value = params
        .get(param)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid(param, "can't be blank"))?;
    let user = state
        .store
        .user_by(caller.app.id, field, &FilterValue::Text(value.to_string()))
        .await?
        .ok_or_else(user_not_found)?;
    Ok(Json(wrapped(&user)))
}

/// `GET /users/by_full_name.json?full_name=…`: a paged list.
pub async fn by_full_name(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let name = params
        .get("full_name")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid("full_name", "can't be blank"))?;
    let mut query = page_query(&state, &params)?;
    query.filters.push(UserFilter {
        field: UserField::FullName,
        op: FilterOp::Eq,
        values: vec![FilterValue::Text(name.to_string())],
    });
    page(&state, &caller, query).await
}

/// `GET /users/by_tags.json?tags[]=a,b`: users with any of the tags, paged.
pub async fn by_tags(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let tags: Vec<String> = params
        .pairs()
        .filter(|(k, _)| *k == "tags" || *k == "tags[]")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if tags.is_empty() {
        return Err(ApiError::invalid("tags", "can't be blank"));
    }
    let mut query = page_query(&state, &params)?;
    query.any_tags = tags;
    page(&state, &caller, query).await
}

/// `GET /users.json?filter[]=…&order=…&page=&per_page=`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let query = list_query(&params, state.config.api.max_per_page)?;
    page(&state, &caller, query).await
}

/// The query of `GET /users.json`: filters, order and page, each checked (a fuzz target
/// feeds it whatever a stranger can put in a query string).
pub fn list_query(params: &Params, max_per_page: u32) -> Result<UserQuery, ApiError> {
    let mut query = page_of(params, max_per_page)?;
    for (key, value) in params.pairs() {
        if key == "filter[]" || key == "filter" {
            query.filters.extend(parse_filters(value)?);
        }
    }
    if let Some(order) = params.get("order").filter(|o| !o.is_empty()) {
        query.order = Some(parse_order(order)?);
    }
    Ok(query)
}

/// `GET /users/password/reset.json?email=…`.
///
/// Switchboard has no mail transport, so it cannot send the reset e-mail QuickBlox sends; it
/// validates the request and logs it for the operator, and says so in the logs.
pub async fn reset_password(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let email = params
        .get("email")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid("email", "can't be blank"))?;
    let user = state
        .store
        .user_by(
            caller.app.id,
            UserField::Email,
            &FilterValue::Text(email.to_string()),
        )
        .await?
        .ok_or_else(user_not_found)?;
    tracing::warn!(
        app = %caller.app.id,
        user = %user.id,
        "password reset requested; no mail transport is configured, so no e-mail was sent"
    );
    Ok(empty_ok())
}

async fn page(
    state: &AppState,
    caller: &Caller,
    query: UserQuery,
) -> Result<Json<Value>, ApiError> {
    let (users, total) = state.store.list_users(caller.app.id, &query).await?;
    let per_page = query.limit;
    let current_page = query.offset / u64::from(per_page) + 1;
    let items: Vec<Value> = users.iter().map(wrapped).collect();
    Ok(Json(json!({
        "current_page": current_page,
        "per_page": per_page,
        "total_entries": total,
        "items": items,
    })))
}

fn page_query(state: &AppState, params: &Params) -> Result<UserQuery, ApiError> {
    page_of(params, state.config.api.max_per_page)
}

/// `page` and `per_page` (capped at `max_per_page`) as a limit and an offset the database
/// takes.
fn page_of(params: &Params, max_per_page: u32) -> Result<UserQuery, ApiError> {
    let number = |name: &str, default: u64| -> Result<u64, ApiError> {
        match params.get(name).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::invalid(name, "must be a positive number")),
        }
    };
    let page = number("page", 1)?;
    let per_page = number("per_page", 10)?.min(u64::from(max_per_page.max(1))) as u32;
    // The database takes a signed 64-bit offset: anything past it is no page at all.
    let offset = (page - 1)
        .checked_mul(u64::from(per_page))
        .filter(|offset| i64::try_from(*offset).is_ok())
        .ok_or_else(|| ApiError::invalid("page", "is too large"))?;
    Ok(UserQuery {
        filters: Vec::new(),
        any_tags: Vec::new(),
        order: None,
        limit: per_page,
        offset,
    })
}

/// Splits one `filter[]` value into filters. The SDK joins several filters and the values of an
/// `in` list with the same comma, so a new filter starts only where a comma is followed by
/// `<type> <field> <op> ` (REST reference §8.2).
pub fn parse_filters(value: &str) -> Result<Vec<UserFilter>, ApiError> {
    let mut raw: Vec<(String, String, String)> = Vec::new();
    for piece in value.split(',') {
        let words: Vec<&str> = piece.trim_start().splitn(4, ' ').collect();
        let starts_filter = words.len() == 4
            && UserField::parse(words[1]).is_some()
            && FilterOp::parse(words[2]).is_some();
        if starts_filter {
            raw.push((words[1].into(), words[2].into(), words[3].into()));
        } else if let Some(last) = raw.last_mut() {
            last.2.push(',');
            last.2.push_str(piece);
        } else {
            return Err(ApiError::invalid(
                "filter",
                format!("{piece:?} is not \"<type> <field> <operator> <value>\""),
            ));
        }
    }
    raw.into_iter()
        .map(|(field_name, op_name, value)| {
            let field = UserField::parse(&field_name).expect("checked while splitting");
            let op = FilterOp::parse(&op_name).expect("checked while splitting");
            let values: Vec<FilterValue> = match op {
                FilterOp::In | FilterOp::Between => value
                    .split(',')
                    .map(|v| filter_value(field, v.trim()))
                    .collect::<Result<_, _>>()?,
                _ => vec![filter_value(field, &value)?],
            };
            if op == FilterOp::Between && values.len() != 2 {
                return Err(ApiError::invalid(
                    "filter",
                    "between takes two values: low,high",
                ));
            }
            if values.is_empty() {
                return Err(ApiError::invalid("filter", "needs a value"));
            }
            Ok(UserFilter { field, op, values })
        })
        .collect()
}

fn filter_value(field: UserField, text: &str) -> Result<FilterValue, ApiError> {
    let bad = || {
        ApiError::invalid(
            "filter",
            format!("{text:?} is not a valid {}", field.column()),
        )
    };
    match field.kind() {
        FieldKind::Integer => text.parse().map(FilterValue::Int).map_err(|_| bad()),
        FieldKind::Date => text
            .parse::<i64>()
            .ok()
            .or_else(|| clock::parse_iso8601(text))
            .map(FilterValue::Int)
            .ok_or_else(bad),
        FieldKind::Text => Ok(FilterValue::Text(text.to_string())),
    }
}

/// `"<asc|desc> <type> <field>"`; the declared type is ignored (the SDK always says `string`).
pub fn parse_order(order: &str) -> Result<(UserField, bool), ApiError> {
    let words: Vec<&str> = order.split_whitespace().collect();
    let bad = || {
        ApiError::invalid(
            "order",
            format!("{order:?} is not \"<asc|desc> <type> <field>\""),
        )
    };
    let (direction, field) = match words.as_slice() {
        [direction, _, field] | [direction, field] => (*direction, *field),
        _ => return Err(bad()),
    };
    let desc = match direction {
        "asc" => false,
        "desc" => true,
        _ => return Err(bad()),
    };
    Ok((UserField::parse(field).ok_or_else(bad)?, desc))
}

/// Applies `user[…]` fields to `user`, validating each; returns the new password if one was
/// given. Unknown fields are an error, so a typo never silently drops data.
fn apply_fields(
    user: &mut User,
    params: &Params,
    creating: bool,
) -> Result<Option<String>, ApiError> {
    let mut errors = Vec::new();
    let mut password = None;
    for (key, value) in params.group("user") {
        let text = value.trim();
        let optional = || (!text.is_empty()).then(|| text.to_string());
        // Length, and no control characters (a NUL or an escape in a login or name reaches
        // logs, rosters and other users' screens).
        let mut check_len = |name: &str, max: usize| {
            if text.chars().count() > max {
                errors.push((
                    name.to_string(),
                    format!("is too long (maximum is {max} characters)"),
                ));
            }
            if text.chars().any(char::is_control) {
                errors.push((
                    name.to_string(),
                    "must not contain control characters".to_string(),
                ));
            }
        };
        match key {
            "login" => {
                check_len("login", 50);
                if creating || !text.is_empty() {
                    if text.chars().count() < 3 {
                        errors.push((
                            "login".into(),
                            "is too short (minimum is 3 characters)".into(),
                        ));
                    }
                    user.login = optional();
                }
            }
            "email" => {
                check_len("email", 255);
                if !text.is_empty() && !valid_email(text) {
                    errors.push(("email".into(), "is invalid".into()));
                }
                user.email = optional();
            }
            "password" => {
                let chars = value.chars().count();
                if chars < 8 {
                    errors.push((
                        "password".into(),
                        "is too short (minimum is 8 characters)".into(),
                    ));
                } else if chars > 128 {
                    errors.push((
                        "password".into(),
                        "is too long (maximum is 128 characters)".into(),
                    ));
                }
                password = Some(value.to_string());
            }
            "old_password" if !creating => {}
            "full_name" => {
                check_len("full_name", 200);
                user.full_name = optional();
            }
            "phone" => {
                check_len("phone", 50);
                user.phone = optional();
            }
            "website" => {
                check_len("website", 255);
                user.website = optional();
            }
            "external_user_id" => {
                check_len("external_user_id", 100);
                user.external_user_id = optional();
            }
            "facebook_id" => {
                check_len("facebook_id", 100);
                user.facebook_id = optional();
            }
            "twitter_id" => {
                check_len("twitter_id", 100);
                user.twitter_id = optional();
            }
            "twitter_digits_id" => {
                check_len("twitter_digits_id", 100);
                user.twitter_digits_id = optional();
            }
            "blob_id" => match text {
                "" => user.blob_id = None,
                _ => match text.parse() {
                    Ok(id) => user.blob_id = Some(id),
                    Err(_) => errors.push(("blob_id".into(), "is not a number".into())),
                },
            },
            "custom_data" => user.custom_data = (!value.is_empty()).then(|| value.to_string()),
            "tag_list" => {
                let tags: Vec<String> = text
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect();
                if tags.iter().any(|t| t.chars().count() > 64) {
                    errors.push((
                        "tag_list".into(),
                        "has a tag longer than 64 characters".into(),
                    ));
                }
                user.tags = tags;
            }
            other => errors.push((other.to_string(), "is not a known user field".into())),
        }
    }
    if errors.is_empty() {
        Ok(password)
    } else {
        Err(ApiError::Invalid(errors))
    }
}

fn valid_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !text.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// Only the user themselves or the account owner may change or delete a user.
fn may_modify(caller: &Caller, target: UserId) -> Result<(), ApiError> {
    match caller.principal {
        Principal::AccountOwner => Ok(()),
        Principal::User(id) if id == target => Ok(()),
        _ => Err(ApiError::forbidden()),
    }
}

async fn hash(state: &AppState, password: &str) -> Result<String, ApiError> {
    state
        .auth
        .hash_password(password)
        .await
        .map_err(|_| ApiError::TooManyRequests("The server is busy, try again later".into()))
}

fn user_not_found() -> ApiError {
    ApiError::NotFound("User not found".into())
}

/// `{id}.json` → the id; anything else is not a user URL.
fn id_from_file(file: &str) -> Result<UserId, ApiError> {
    file.strip_suffix(".json")
        .and_then(|id| id.parse::<i64>().ok())
        .map(UserId)
        .ok_or_else(|| ApiError::NotFound("Not found".into()))
}

fn external_from_file(file: &str) -> Result<String, ApiError> {
    file.strip_suffix(".json")
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ApiError::NotFound("Not found".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_joined_filters_and_in_lists() {
        let filters = parse_filters("number id in 1,2,3,string login eq bob").unwrap();
        assert_eq!(filters.len(), 2);
        assert_eq!(filters[0].field, UserField::Id);
        assert_eq!(filters[0].op, FilterOp::In);
        assert_eq!(
            filters[0].values,
            vec![
                FilterValue::Int(1),
                FilterValue::Int(2),
                FilterValue::Int(3)
            ]
        );
        assert_eq!(filters[1].values, vec![FilterValue::Text("bob".into())]);
    }

    #[test]
    fn declared_type_is_ignored_and_commas_stay_in_text_values() {
        let filters = parse_filters("string id gt 5,string full_name eq Smith, John").unwrap();
        assert_eq!(filters[0].values, vec![FilterValue::Int(5)]);
        assert_eq!(
            filters[1].values,
            vec![FilterValue::Text("Smith, John".into())]
        );
    }

    #[test]
    fn dates_accept_iso_and_unix() {
        let f = parse_filters("date created_at between 2030-01-01T00:00:00Z,1893542400").unwrap();
        assert_eq!(
            f[0].values,
            vec![
                FilterValue::Int(1_893_456_000),
                FilterValue::Int(1_893_542_400)
            ]
        );
    }

    #[test]
    fn bad_filters_are_422() {
        for bad in [
            "id gt 5",
            "number nosuch eq 1",
            "number id gt x",
            "number id between 1",
            "number id eq",
        ] {
            let err = parse_filters(bad).unwrap_err();
            assert_eq!(err.status().as_u16(), 422, "{bad}");
        }
    }

    #[test]
    fn order_forms() {
        assert_eq!(
            parse_order("desc string id").unwrap(),
            (UserField::Id, true)
        );
        assert_eq!(
            parse_order("asc date created_at").unwrap(),
            (UserField::CreatedAt, false)
        );
        assert_eq!(parse_order("asc login").unwrap(), (UserField::Login, false));
        assert!(parse_order("sideways string id").is_err());
        assert!(parse_order("asc string password_hash").is_err());
    }

    /// Arbitrary filter and order strings get a result or a 422, never a panic.
    #[test]
    fn random_filters_never_panic() {
        let words = [
            "number",
            "string",
            "id",
            "login",
            "created_at",
            "in",
            "between",
            "eq",
            "gt",
            "1",
            "x",
            ",",
            " ",
            "2030-01-01",
            "",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut text = String::new();
            let mut bits = state;
            for _ in 0..6 {
                text.push_str(words[(bits % words.len() as u64) as usize]);
                text.push(if bits & 16 == 0 { ' ' } else { ',' });
                bits >>= 5;
            }
            if let Err(error) = parse_filters(&text) {
                assert_eq!(error.status().as_u16(), 422);
            }
            let _ = parse_order(&text);
        }
    }

    #[test]
    fn emails() {
        assert!(valid_email("a@b.co"));
        assert!(!valid_email("a@b"));
        assert!(!valid_email("@b.co"));
        assert!(!valid_email("a b@c.de"));
    }
}
