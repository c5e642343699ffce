-- Applications (tenants), their users, REST sessions and the session replay guard.
CREATE TABLE apps (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    auth_key TEXT NOT NULL UNIQUE,
    auth_secret TEXT NOT NULL,
    account_key TEXT NOT NULL,
    api_key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    app_id BIGINT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    login TEXT,
    email TEXT,
    phone TEXT,
    full_name TEXT,
    website TEXT,
    external_user_id TEXT,
    facebook_id TEXT,
    twitter_id TEXT,
    twitter_digits_id TEXT,
    blob_id BIGINT,
    custom_data TEXT,
    tags TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_request_at BIGINT,
    CONSTRAINT users_login_uq UNIQUE (app_id, login),
    CONSTRAINT users_email_uq UNIQUE (app_id, email),
    CONSTRAINT users_external_uq UNIQUE (app_id, external_user_id)
);
CREATE INDEX users_app_full_name ON users (app_id, full_name);
CREATE INDEX users_app_phone ON users (app_id, phone);

CREATE TABLE sessions (
    id BIGSERIAL PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    app_id BIGINT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    user_id BIGINT,
    nonce BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX sessions_user ON sessions (app_id, user_id);

CREATE TABLE session_nonces (
    app_id BIGINT NOT NULL,
    scope TEXT NOT NULL,
    ts BIGINT NOT NULL,
    nonce TEXT NOT NULL,
    PRIMARY KEY (app_id, scope, ts, nonce)
);
CREATE INDEX session_nonces_ts ON session_nonces (ts);

