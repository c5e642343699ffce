//! Request parameters as QuickBlox clients send them (REST reference §4).
//!
//! GET puts them in the query, every other verb (DELETE included) in the body, either
//! `application/x-www-form-urlencoded` (keys percent-encoded as a whole, `k[sub]` one level deep,
//! arrays as one comma-joined value) or JSON. Both become one list of decoded `(key, value)`
//! pairs with bracketed keys, so handlers and the signature check read them the same way.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, Method};
use serde_json::Value;

use super::error::ApiError;
use super::AppState;

/// Decoded request parameters, in arrival order. Parsed JSON bodies are also kept whole.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
    json: Option<Value>,
}

impl Params {
    /// Strict `application/x-www-form-urlencoded` decoding: a bad `%` escape or bytes that are
    /// not UTF-8 after decoding are a 400, never silently replaced.
    pub fn from_urlencoded(input: &[u8]) -> Result<Params, ApiError> {
        let mut pairs = Vec::new();
        for segment in input.split(|b| *b == b'&') {
            if segment.is_empty() {
                continue;
            }
            let (key, value) = match segment.iter().position(|b| *b == b'=') {
                Some(i) => (&segment[..i], &segment[i + 1..]),
                None => (segment, &b""[..]),
            };
            let key = decode_component(key)?;
            if key.is_empty() {
                return Err(malformed());
            }
            pairs.push((key, decode_component(value)?));
        }
        Ok(Params { pairs, json: None })
    }

    /// Flattens a JSON object one level the way the SDK's form encoder would: nested objects
    /// become `parent[child]`, arrays one comma-joined value, `null` is dropped.
    pub fn from_json(value: Value) -> Result<Params, ApiError> {
        let Value::Object(map) = &value else {
            return Err(ApiError::BadRequest("JSON body must be an object".into()));
        };
        let mut pairs = Vec::new();
        for (key, item) in map {
            match item {
                Value::Object(inner) => {
                    for (sub, leaf) in inner {
                        if let Some(text) = scalar_text(leaf) {
                            pairs.push((format!("{key}[{sub}]"), text));
                        }
                    }
                }
                leaf => {
                    if let Some(text) = scalar_text(leaf) {
                        pairs.push((key.clone(), text));
                    }
                }
            }
        }
        Ok(Params {
            pairs,
            json: Some(value),
        })
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The JSON body as sent, when there was one.
    pub fn json(&self) -> Option<&Value> {
        self.json.as_ref()
    }

    /// The value of a top-level key (the last one wins, as in most form parsers).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether any key is `parent` or `parent[…]`.
    pub fn has_group(&self, parent: &str) -> bool {
        self.pairs.iter().any(|(k, _)| split_key(k).0 == parent)
    }

    /// The `(sub, value)` pairs of `parent[sub]` keys.
    pub fn group<'a>(&'a self, parent: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.pairs
            .iter()
            .filter_map(move |(k, v)| match split_key(k) {
                (p, Some(sub)) if p == parent => Some((sub, v.as_str())),
                _ => None,
            })
    }

    fn extend(&mut self, other: Params) {
        self.pairs.extend(other.pairs);
        if other.json.is_some() {
            self.json = other.json;
        }
    }
}

/// `user[login]` → (`user`, `Some("login")`); `filter[]` → (`filter`, `Some("")`).
pub fn split_key(key: &str) -> (&str, Option<&str>) {
    match (key.find('['), key.strip_suffix(']')) {
        (Some(open), Some(inner)) if open > 0 => (&key[..open], Some(&inner[open + 1..])),
        _ => (key, None),
    }
}

impl FromRequest<AppState> for Params {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Params, ApiError> {
        let mut params = match request.uri().query() {
            Some(query) => Params::from_urlencoded(query.as_bytes())?,
            None => Params::default(),
        };
        if request.method() == Method::GET || request.method() == Method::HEAD {
            // The SDK sends a form Content-Type on GET too; there is no body to read.
            return Ok(params);
        }
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let api = &state.config.api;
        let body = read_body(
            request.into_body(),
            api.body_limit_bytes,
            std::time::Duration::from_secs(api.body_read_timeout_s),
        )
        .await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(params);
        }
        let parsed = if content_type.starts_with("application/json") {
            let value: Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("Malformed JSON body: {e}")))?;
            Params::from_json(value)?
        } else if content_type.is_empty()
            || content_type.starts_with("application/x-www-form-urlencoded")
            || content_type.starts_with("text/plain")
        {
            Params::from_urlencoded(&body)?
        } else {
            return Err(ApiError::BadRequest(format!(
                "Unsupported Content-Type {content_type:?}: send application/x-www-form-urlencoded or application/json"
            )));
        };
        params.extend(parsed);
        Ok(params)
    }
}

/// Reads at most `limit` bytes of body; more is a 413, not a truncation.
/// The whole body, at most `limit` bytes, within `timeout`: a client that trickles its body
/// does not hold the connection and its buffer for long.
pub async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, ApiError> {
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit));
    read.await
        .map_err(|_| ApiError::BodyTimeout)?
        .map_err(|error| {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest("could not read the request body".into())
            }
        })
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(scalar_text)
                .collect::<Vec<_>>()
                .join(","),
        ),
        Value::Object(_) => Some(value.to_string()),
    }
}

fn malformed() -> ApiError {
    ApiError::BadRequest("Malformed form data".into())
}

fn decode_component(raw: &[u8]) -> Result<String, ApiError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or_else(malformed)?;
                let hex = std::str::from_utf8(hex).map_err(|_| malformed())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| malformed())?);
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::BadRequest("Form data is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decodes_sdk_form_with_encoded_brackets_and_arrays() {
        let p = Params::from_urlencoded(
            b"application_id=42&user[login]=u1&user[password]=p%40ss%20w%26rd&type%5Bin%5D=2%2C3&filter[]=number%20id%20in%201%2C2",
        )
        .unwrap();
        assert_eq!(p.get("application_id"), Some("42"));
        assert_eq!(p.get("type[in]"), Some("2,3"));
        assert_eq!(p.get("filter[]"), Some("number id in 1,2"));
        let user: Vec<_> = p.group("user").collect();
        assert_eq!(user, vec![("login", "u1"), ("password", "p@ss w&rd")]);
        assert!(p.has_group("user"));
        assert!(!p.has_group("use"));
    }

    #[test]
    fn plus_is_space_and_lowercase_escapes_decode() {
        let p = Params::from_urlencoded(b"a=b+c&d=%2c%5b&").unwrap();
        assert_eq!(p.get("a"), Some("b c"));
        assert_eq!(p.get("d"), Some(",["));
    }

    #[test]
    fn malformed_escapes_are_rejected() {
        for bad in [&b"a=%ZZ"[..], b"a=%4", b"a=%", b"=v", b"a=%FF%FE"] {
            assert!(
                Params::from_urlencoded(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn json_flattens_like_the_form_encoder() {
        let p = Params::from_json(
            json!({"user": {"login": "u", "tag_list": ["a", "b"], "x": null}, "n": 5, "b": true}),
        )
        .unwrap();
        assert_eq!(p.get("user[login]"), Some("u"));
        assert_eq!(p.get("user[tag_list]"), Some("a,b"));
        assert_eq!(p.get("user[x]"), None);
        assert_eq!(p.get("n"), Some("5"));
        assert_eq!(p.get("b"), Some("true"));
        assert!(Params::from_json(json!([1])).is_err());
    }

    /// Random bytes never panic the decoder; whatever decodes re-encodes to the same pairs.
    #[test]
    fn random_input_never_panics_and_round_trips() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"ab=&%+[]2F0xZ\xff\xc3\xa9 ";
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let Ok(params) = Params::from_urlencoded(&input) else {
                continue;
            };
            let encoded: Vec<String> = params
                .pairs()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            let again = Params::from_urlencoded(encoded.join("&").as_bytes()).unwrap();
            assert_eq!(
                again.pairs,
                params.pairs,
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    fn encode(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    #[test]
    fn split_key_forms() {
        assert_eq!(split_key("user[login]"), ("user", Some("login")));
        assert_eq!(split_key("filter[]"), ("filter", Some("")));
        assert_eq!(split_key("plain"), ("plain", None));
        assert_eq!(split_key("[x]"), ("[x]", None));
    }
}
