//! Configuration: one TOML file, environment overrides, unknown keys rejected.
//!
//! Every key has a default in code and `config/switchboard.toml` documents each one with the
//! same value. Loading goes file → environment (`SWITCHBOARD_SECTION__KEY=value`) → typed
//! [`Config`], so an override is checked exactly like a key in the file. The key names of the
//! operator contract in docs/architecture.md (`server.data_dir`, `store.url`, `api.listen`, …) never change.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

/// The whole configuration, one struct per `[section]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub tls: TlsConfig,
    pub api: ApiConfig,
    pub xmpp: XmppConfig,
    pub chat: ChatConfig,
    pub turn: TurnConfig,
    pub sfu: SfuConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the SQLite database, the generated certificate and other state live.
    pub data_dir: PathBuf,
    /// How long open connections may take to finish after SIGTERM/SIGINT.
    pub drain_timeout_s: u64,
    /// `text` or `json`.
    pub log_format: String,
    /// A `tracing` filter such as `info` or `switchboard=debug,info`; `RUST_LOG` wins when set.
    pub log_level: String,
    /// Replace personal data (logins, addresses, JIDs) in logs with `[redacted]`.
    pub log_redact_pii: bool,
    /// Client connections (REST and XMPP together) the server keeps open; past it new ones
    /// are refused at accept and `/ready` answers 503. 0: the process's open-file limit less a
    /// reserve, so the server never runs out of descriptors for its own work.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("./data"),
            drain_timeout_s: 10,
            log_format: "text".into(),
            log_level: "info".into(),
            log_redact_pii: false,
            max_connections: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Empty: SQLite at `{data_dir}/switchboard.db`. Otherwise `sqlite://…` or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: String::new(),
            max_connections: 8,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; empty: a self-signed pair is generated in `data_dir`.
    pub cert: String,
    /// PEM private key matching `cert`.
    pub key: String,
}

/// Default argon2id memory per password hash (KiB); see `api.password_hash_memory_kib`.
///
/// 8 MiB and one pass cost about 2.4 ms of CPU per check here, a fifth of OWASP's 19 MiB × 2
/// (14 ms), so a cold password login costs well under half of ejabberd's (PBKDF2 storage) while
/// each guess still costs an attacker's GPU far more memory traffic than the PBKDF2-SHA1-4096
/// verifiers Prosody and ejabberd store. Operators wanting OWASP's profile set 19456 and 2.
pub const DEFAULT_PASSWORD_HASH_MEMORY_KIB: u32 = 8 * 1024;
/// Default argon2id passes; see `api.password_hash_passes`.
pub const DEFAULT_PASSWORD_HASH_PASSES: u32 = 1;
/// Largest accepted memory cost (1 GiB); stored hashes asking for more are refused too.
pub const MAX_PASSWORD_HASH_MEMORY_KIB: u32 = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// HTTPS listener of the QuickBlox REST API.
    pub listen: String,
    /// Optional plain-HTTP listener for a TLS-terminating reverse proxy; empty: off.
    pub http_listen: String,
    /// Path prefix when `endpoints.api` carries one (e.g. `/qb` for `example.com/qb`).
    pub path_prefix: String,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Seconds a request body may take to arrive (a slow body is cut off with 408).
    pub body_read_timeout_s: u64,
    /// Simultaneous REST connections from one address.
    pub max_connections_per_ip: u32,
    /// A session token expires this long after its last request (QuickBlox: 2 hours).
    pub token_ttl_s: u64,
    /// Accepted distance between a session request's `timestamp` and server time.
    pub signature_window_s: u64,
    /// Failed logins for one user from one source address within `login_window_s` before
    /// that source's further attempts for that user get 429 (the user is never locked out).
    pub login_failures_per_user: u32,
    /// Failed login attempts from one source address within `login_window_s` before its
    /// attempts get 429. Successful logins never count (offices share one NAT address).
    pub login_attempts_per_source: u32,
    pub login_window_s: u64,
    /// Largest `per_page` a list call may ask for.
    pub max_per_page: u32,
    /// argon2id memory per password hash, KiB. Stored hashes keep the parameters they were made
    /// with; a hash made with other parameters is replaced at the user's next successful login.
    pub password_hash_memory_kib: u32,
    /// argon2id passes over that memory. CPU per password check grows with memory × passes.
    pub password_hash_passes: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "0.0.0.0:8443".into(),
            http_listen: String::new(),
            path_prefix: String::new(),
            body_limit_bytes: 1024 * 1024,
            body_read_timeout_s: 30,
            max_connections_per_ip: 1000,
            token_ttl_s: 7200,
            signature_window_s: 3600,
            login_failures_per_user: 10,
            login_attempts_per_source: 60,
            login_window_s: 300,
            max_per_page: 100,
            password_hash_memory_kib: DEFAULT_PASSWORD_HASH_MEMORY_KIB,
            password_hash_passes: DEFAULT_PASSWORD_HASH_PASSES,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XmppConfig {
    /// The XMPP domain (the SDK's `endpoints.chat`); JIDs are `{userId}-{appId}@{domain}`.
    pub domain: String,
    /// c2s over TCP with STARTTLS.
    pub listen: String,
    /// XMPP over WebSocket (RFC 7395); empty: off.
    pub ws_listen: String,
    /// Serve the WebSocket listener over TLS (`wss://`) with the `[tls]` certificate.
    pub ws_tls: bool,
    /// Optional c2s with TLS from the first byte (XEP-0368, usually 5223); empty: off.
    pub direct_tls_listen: String,
    /// Require STARTTLS before authentication on the TCP listener.
    pub require_tls: bool,
    /// Allow SASL PLAIN without TLS from loopback addresses (tests, local proxies).
    pub allow_plain_on_loopback: bool,
    /// Largest stanza accepted, in bytes (larger closes the stream with policy-violation).
    pub max_stanza_bytes: usize,
    /// Sustained stanzas per second one connection may send, and the burst above it.
    pub stanza_rate_per_s: u32,
    pub stanza_burst: u32,
    /// A client over its stanza budget is slowed (its input is not read until tokens refill);
    /// one that stays over it this long is closed with policy-violation.
    pub stanza_overload_close_s: u64,
    /// Seconds from connecting to a bound session; sending bytes does not extend it.
    pub auth_timeout_s: u64,
    /// Seconds a write to a client may wait for it to read; past it the connection is closed
    /// (its queued messages go to offline storage).
    pub write_timeout_s: u64,
    /// Simultaneous connections from one IP address.
    pub max_connections_per_ip: u32,
    /// Failed authentications on one connection before it is closed.
    pub max_auth_failures: u32,
    /// Close a connection that sent nothing for this long (clients ping well within it).
    pub idle_timeout_s: u64,
    /// Offline messages kept per user; beyond that new ones bounce with resource-constraint.
    pub offline_max_per_user: u32,
    /// Users whose block rules (XEP-0191 list and default privacy list) are kept in memory;
    /// past it an arbitrary cached user gives way and is read again when needed.
    pub block_rules_cache: usize,
    /// How long a stream-management session stays resumable after its connection drops.
    pub sm_resume_timeout_s: u64,
    /// Unacknowledged stanzas kept per resumable session.
    pub sm_max_unacked: u32,
    /// Bytes of unacknowledged stanzas kept per resumable session; a client that reads but
    /// never acknowledges past it is closed with resource-constraint (the copies are stored
    /// offline).
    pub sm_max_unacked_bytes: usize,
    /// Stanzas held back per inactive (XEP-0352) client before a flush.
    pub csi_max_held: u32,
    /// Outgoing queue length per session.
    pub session_queue: usize,
    /// Bytes one session's queue may hold; past it (a client that stopped reading) messages
    /// for it go to offline storage instead of memory.
    pub session_queue_bytes: usize,
    /// Bytes all sessions' queues may hold together.
    pub queued_bytes_total: usize,
}

impl Default for XmppConfig {
    fn default() -> Self {
        XmppConfig {
            domain: "localhost".into(),
            listen: "0.0.0.0:5222".into(),
            ws_listen: "0.0.0.0:5291".into(),
            ws_tls: false,
            direct_tls_listen: String::new(),
            require_tls: true,
            allow_plain_on_loopback: true,
            max_stanza_bytes: 256 * 1024,
            stanza_rate_per_s: 200,
            stanza_burst: 400,
            stanza_overload_close_s: 60,
            auth_timeout_s: 30,
            write_timeout_s: 60,
            max_connections_per_ip: 5000,
            max_auth_failures: 3,
            idle_timeout_s: 300,
            offline_max_per_user: 1000,
            block_rules_cache: 100_000,
            sm_resume_timeout_s: 300,
            sm_max_unacked: 1000,
            sm_max_unacked_bytes: 4 * 1024 * 1024,
            csi_max_held: 100,
            session_queue: 1024,
            session_queue_bytes: 4 * 1024 * 1024,
            queued_bytes_total: 512 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// History writes (saved messages, read/delivered marks) waiting for the writer's next
    /// commit; when full, senders wait (their connections slow down) instead of memory growing.
    pub writer_queue: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig { writer_queue: 8192 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    pub listen: String,
    pub realm: String,
    /// CIDRs exempt from the relay deny list (loopback and private ranges are denied by default).
    pub allow_peers: Vec<String>,
    /// Static long-term credentials, `name:password`.
    pub users: Vec<String>,
    /// TURN REST API shared secret; empty: generated in `data_dir`.
    pub static_auth_secret: String,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            listen: "0.0.0.0:3478".into(),
            realm: "switchboard".into(),
            allow_peers: Vec::new(),
            users: Vec::new(),
            static_auth_secret: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SfuConfig {
    /// Janus API over WebSocket (subprotocol `janus-protocol`) and HTTP long poll; empty: off.
    pub signalling_listen: String,
    /// Serve the signalling port over TLS (`wss://`, `https://`) with the `[tls]` certificate:
    /// a page served over HTTPS may only open `wss://`.
    pub signalling_tls: bool,
    pub media_listen: String,
    pub public_ip: String,
    /// A Janus session with no request (keepalive, long poll) for this long ends.
    pub session_timeout_s: u64,
    /// Most publishers in a QuickBlox dialog's room (rooms made by `create` say their own).
    pub max_publishers: usize,
    /// Most conference rooms at once; a join or `create` beyond gets 499 "too many rooms".
    pub max_rooms: usize,
    /// Media shards: threads that each own some rooms and their PeerConnections, all reading
    /// the one media port (SO_REUSEPORT). 0: one per core the process may run on.
    pub shards: usize,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            signalling_listen: "0.0.0.0:8188".into(),
            signalling_tls: false,
            media_listen: "0.0.0.0:10000".into(),
            public_ip: String::new(),
            session_timeout_s: 60,
            max_publishers: 12,
            max_rooms: 10_000,
            shards: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `/metrics`, `/health`, `/ready`; empty: off.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

/// Prefix of environment overrides; a variable counts only when it also contains `__`.
const ENV_PREFIX: &str = "SWITCHBOARD_";

impl Config {
    /// Loads `path` (or only defaults when `None`), then applies `SWITCHBOARD_SECTION__KEY`
    /// variables from the process environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment, so tests need not touch the process's.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let (mut table, origin) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                let table: toml::Table = toml::from_str(&text)
                    .map_err(|e| anyhow!("{}: {}", path.display(), e.message()))?;
                (table, path.display().to_string())
            }
            None => (toml::Table::new(), "built-in defaults".to_string()),
        };
        let mut overrides = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(section_table) = entry.as_table_mut() else {
                bail!("{origin}: `{section}` is not a section (set by {name})");
            };
            section_table.insert(key, parse_env_value(&value));
            overrides.push(name);
        }
        let config: Config = Config::deserialize(toml::Value::Table(table)).map_err(|e| {
            let mut message = format!("{origin}: {}", e.message());
            if !overrides.is_empty() {
                message.push_str(&format!(
                    " (environment overrides: {})",
                    overrides.join(", ")
                ));
            }
            anyhow!(message)
        })?;
        config.validate().map_err(|e| anyhow!("{origin}: {e}"))?;
        Ok(config)
    }

    /// Checks values that parse but cannot work, so the error names the key at start-up.
    pub fn validate(&self) -> anyhow::Result<()> {
        check_addr("api.listen", &self.api.listen, false)?;
        check_addr("api.http_listen", &self.api.http_listen, true)?;
        check_addr("xmpp.listen", &self.xmpp.listen, false)?;
        check_addr("xmpp.ws_listen", &self.xmpp.ws_listen, true)?;
        check_addr("xmpp.direct_tls_listen", &self.xmpp.direct_tls_listen, true)?;
        check_addr("sfu.signalling_listen", &self.sfu.signalling_listen, true)?;
        if self.sfu.shards > 256 {
            anyhow::bail!("sfu.shards must be at most 256 (0: one per core)");
        }
        if self.sfu.max_publishers == 0 || self.sfu.max_publishers > 64 {
            anyhow::bail!("sfu.max_publishers must be between 1 and 64");
        }
        if self.xmpp.max_stanza_bytes < 1024 {
            bail!("xmpp.max_stanza_bytes must be at least 1024");
        }
        if self.xmpp.session_queue == 0 || self.xmpp.stanza_rate_per_s == 0 {
            bail!("xmpp.session_queue and xmpp.stanza_rate_per_s must be positive");
        }
        check_addr("metrics.listen", &self.metrics.listen, true)?;
        let prefix = &self.api.path_prefix;
        if !prefix.is_empty() && (!prefix.starts_with('/') || prefix == "/") {
            bail!("api.path_prefix must be empty or start with / (e.g. \"/qb\")");
        }
        if self.api.token_ttl_s == 0 {
            bail!("api.token_ttl_s must be positive");
        }
        if self.api.max_per_page == 0 {
            bail!("api.max_per_page must be positive");
        }
        if !(8..=MAX_PASSWORD_HASH_MEMORY_KIB).contains(&self.api.password_hash_memory_kib)
            || !(1..=16).contains(&self.api.password_hash_passes)
        {
            bail!(
                "api.password_hash_memory_kib must be 8..={MAX_PASSWORD_HASH_MEMORY_KIB} and \
                 api.password_hash_passes 1..=16"
            );
        }
        if self.tls.cert.is_empty() != self.tls.key.is_empty() {
            bail!("tls.cert and tls.key must be set together");
        }
        if !matches!(self.server.log_format.as_str(), "text" | "json") {
            bail!("server.log_format must be \"text\" or \"json\"");
        }
        let url = &self.store.url;
        if !(url.is_empty()
            || url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            bail!("store.url must be empty, sqlite:… or postgres://…");
        }
        if self.xmpp.domain.is_empty() {
            bail!("xmpp.domain must not be empty");
        }
        // Durations become deadlines (`now + d`): a year is plenty, and beyond it they could
        // overflow or, cast to signed, disable a limit.
        const YEAR_S: u64 = 365 * 24 * 3600;
        for (key, value) in [
            ("xmpp.idle_timeout_s", self.xmpp.idle_timeout_s),
            ("xmpp.auth_timeout_s", self.xmpp.auth_timeout_s),
            ("xmpp.write_timeout_s", self.xmpp.write_timeout_s),
            (
                "xmpp.stanza_overload_close_s",
                self.xmpp.stanza_overload_close_s,
            ),
            ("xmpp.sm_resume_timeout_s", self.xmpp.sm_resume_timeout_s),
            ("api.login_window_s", self.api.login_window_s),
            ("api.body_read_timeout_s", self.api.body_read_timeout_s),
        ] {
            if value > YEAR_S {
                bail!("{key} must be at most {YEAR_S} (a year)");
            }
        }
        if self.api.body_read_timeout_s == 0 {
            bail!("api.body_read_timeout_s must be positive");
        }
        Ok(())
    }

    /// A configuration for tests and embedding: every listener on `127.0.0.1:0`, data in `dir`.
    pub fn for_tests(dir: &Path) -> Config {
        let mut config = Config::default();
        config.server.data_dir = dir.to_path_buf();
        config.server.drain_timeout_s = 2;
        config.api.listen = "127.0.0.1:0".into();
        config.api.http_listen = "127.0.0.1:0".into();
        config.xmpp.listen = "127.0.0.1:0".into();
        config.xmpp.ws_listen = "127.0.0.1:0".into();
        config.metrics.listen = "127.0.0.1:0".into();
        config.sfu.signalling_listen = "127.0.0.1:0".into();
        config.sfu.media_listen = "127.0.0.1:0".into();
        config.sfu.public_ip = "127.0.0.1".into();
        config
    }
}

/// Environment values are TOML when they parse as a TOML value (`10`, `true`, `["a"]`),
/// else a plain string, so `SWITCHBOARD_XMPP__DOMAIN=example.com` needs no quotes.
fn parse_env_value(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut table) => table
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn check_addr(key: &str, value: &str, may_be_empty: bool) -> anyhow::Result<()> {
    if value.is_empty() && may_be_empty {
        return Ok(());
    }
    value
        .parse::<SocketAddr>()
        .map(|_| ())
        .map_err(|_| anyhow!("{key} = {value:?} is not an address such as 0.0.0.0:8443"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn shipped_file_equals_code_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/switchboard.toml");
        let loaded = Config::load_with_env(Some(&path), []).unwrap();
        let from_file = serde_json::to_value(&loaded).unwrap();
        let defaults = serde_json::to_value(Config::default()).unwrap();
        assert_eq!(
            from_file, defaults,
            "config/switchboard.toml drifted from the code defaults"
        );
    }

    #[test]
    fn unknown_key_is_rejected_with_key_and_file() {
        let file = write("[api]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n");
        let err = Config::load_with_env(Some(file.path()), [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
        assert!(err.contains(&file.path().display().to_string()), "{err}");
    }

    #[test]
    fn unknown_section_is_rejected() {
        let file = write("[apii]\nlisten = \"127.0.0.1:1\"\n");
        let err = Config::load_with_env(Some(file.path()), [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("apii"), "{err}");
    }

    #[test]
    fn environment_overrides_file() {
        let file = write("[xmpp]\ndomain = \"a.example\"\n");
        let env = [
            (
                "SWITCHBOARD_XMPP__DOMAIN".to_string(),
                "b.example".to_string(),
            ),
            ("SWITCHBOARD_API__TOKEN_TTL_S".to_string(), "60".to_string()),
            (
                "SWITCHBOARD_TURN__USERS".to_string(),
                "[\"u:p\"]".to_string(),
            ),
            (
                "SWITCHBOARD_TEST_PG_URL".to_string(),
                "ignored: no double underscore".to_string(),
            ),
        ];
        let config = Config::load_with_env(Some(file.path()), env).unwrap();
        assert_eq!(config.xmpp.domain, "b.example");
        assert_eq!(config.api.token_ttl_s, 60);
        assert_eq!(config.turn.users, vec!["u:p".to_string()]);
    }

    #[test]
    fn unknown_environment_key_is_rejected_naming_the_variable() {
        let env = [("SWITCHBOARD_API__NOPE".to_string(), "1".to_string())];
        let err = Config::load_with_env(None, env).unwrap_err().to_string();
        assert!(
            err.contains("nope") && err.contains("SWITCHBOARD_API__NOPE"),
            "{err}"
        );
    }

    #[test]
    fn bad_address_names_the_key() {
        let env = [("SWITCHBOARD_API__LISTEN".to_string(), "nowhere".to_string())];
        let err = Config::load_with_env(None, env).unwrap_err().to_string();
        assert!(err.contains("api.listen"), "{err}");
    }

    #[test]
    fn password_cost_out_of_range_names_the_keys() {
        for (key, value) in [
            ("MEMORY_KIB", "4"),
            ("MEMORY_KIB", "2000000"),
            ("PASSES", "0"),
        ] {
            let env = [(
                format!("SWITCHBOARD_API__PASSWORD_HASH_{key}"),
                value.to_string(),
            )];
            let err = Config::load_with_env(None, env).unwrap_err().to_string();
            assert!(err.contains("api.password_hash_memory_kib"), "{err}");
        }
    }
}
