//! `switchboard`: the server and its operator commands.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use switchboard::config::Config;
use switchboard::model::AppId;
use switchboard::store::Store;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Self-hosted QuickBlox-compatible communication server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service (zero configuration works: SQLite and a self-signed cert in ./data).
    Serve {
        /// TOML configuration file (see config/switchboard.toml).
        #[arg(long, env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Manage applications (tenants).
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum AppCommand {
    /// Create an application and print its credentials.
    Create {
        #[arg(long)]
        name: String,
        /// Print one JSON object (application_id, auth_key, auth_secret, account_key, api_key).
        #[arg(long)]
        json: bool,
        #[arg(long, env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user in an application.
    Create {
        #[arg(long)]
        app: i64,
        #[arg(long)]
        login: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        email: Option<String>,
        /// Comma-separated tags.
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        #[arg(long)]
        json: bool,
        #[arg(long, env = "SWITCHBOARD_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    runtime()?.block_on(run(Cli::parse()))
}

/// The async runtime sized to the CPUs this process may use (affinity and cgroup quota
/// included): on one, a current-thread scheduler, which skips the work-stealing machinery a
/// single worker never needs; on more, one worker per CPU.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            switchboard::telemetry::init(&config.server);
            switchboard::run(config).await
        }
        Command::App {
            command: AppCommand::Create { name, json, config },
        } => {
            let config = Config::load(config.as_deref())?;
            let store = open_store(&config).await?;
            let app = switchboard::admin::create_app(&store, &name).await?;
            store.close().await;
            if json {
                println!("{}", serde_json::to_string(&app)?);
            } else {
                println!("Application {:?} created.", app.name);
                println!("  application_id  {}", app.application_id);
                println!("  auth_key        {}", app.auth_key);
                println!("  auth_secret     {}", app.auth_secret);
                println!("  account_key     {}", app.account_key);
                println!("  api_key         {}   (shown once; server-to-server, acts as the account owner)", app.api_key);
            }
            Ok(())
        }
        Command::User {
            command:
                UserCommand::Create {
                    app,
                    login,
                    password,
                    email,
                    tags,
                    json,
                    config,
                },
        } => {
            let config = Config::load(config.as_deref())?;
            let store = open_store(&config).await?;
            store
                .app(AppId(app))
                .await?
                .with_context(|| format!("no application {app}"))?;
            let tags: Vec<String> = tags.into_iter().filter(|t| !t.is_empty()).collect();
            let user = switchboard::admin::create_user(
                &store,
                AppId(app),
                &login,
                &password,
                email.as_deref(),
                &tags,
            )
            .await
            .with_context(|| format!("cannot create user {login:?}"))?;
            store.close().await;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"id": user.id.0, "login": login, "application_id": app})
                );
            } else {
                println!("User {login:?} created with id {}.", user.id);
            }
            Ok(())
        }
    }
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(
        &config.store.url,
        &config.server.data_dir,
        config.store.max_connections,
    )
    .await
    .context("opening the store")
}
