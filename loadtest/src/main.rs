//! `switchboard-loadtest`: load scenarios for Switchboard and peer servers, with the stable
//! interface described in docs/architecture.md (module map, `loadtest/`).

mod create;
mod pacing;
mod procfs;
mod report;
mod sfu;
mod tls;
mod users;
mod xmpp;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "switchboard-loadtest",
    version,
    about = "Load scenarios for Switchboard and peer servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// 1:1 chat between N logged-in users at an aggregate message rate.
    Xmpp(XmppArgs),
    /// TURN allocations relaying at a packet rate (not implemented yet).
    Turn(TurnArgs),
    /// Conference rooms over the Janus API: every participant publishes and subscribes to
    /// every other feed.
    Sfu(SfuArgs),
}

#[derive(Args)]
struct XmppArgs {
    /// c2s host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// c2s port.
    #[arg(long, default_value_t = 5222)]
    port: u16,
    /// One `jid password` per line (written first with --create).
    #[arg(long)]
    users_file: PathBuf,
    /// Use only the first N users of the file.
    #[arg(long)]
    users: Option<usize>,
    /// Aggregate messages per second, spread evenly over all users.
    #[arg(long, required_unless_present = "create_only")]
    rate: Option<f64>,
    /// Measured window, seconds.
    #[arg(long, required_unless_present = "create_only")]
    duration: Option<f64>,
    /// Unmeasured load before the window, seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Longest wait for in-flight messages after sending stops, seconds.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Server process to read CPU time and RSS of (/proc/PID).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
    /// Accept any server certificate (self-signed test servers).
    #[arg(long)]
    tls_insecure: bool,
    /// PEM file of CA certificates to verify the server with (default: Mozilla roots).
    #[arg(long, conflicts_with = "tls_insecure")]
    ca_file: Option<PathBuf>,
    /// XMPP domain for stream headers and TLS; default: each user's JID domain (with
    /// --create: the domain of the new JIDs, "localhost" if not given).
    #[arg(long)]
    domain: Option<String>,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 16)]
    login_concurrency: usize,
    /// Give up on one login after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    login_timeout: f64,
    /// Create N users on Switchboard through its REST API first and write --users-file.
    #[arg(long, value_name = "N", requires_all = ["api", "app_json"])]
    create: Option<usize>,
    /// REST API base URL for --create, e.g. https://127.0.0.1:8443.
    #[arg(long)]
    api: Option<String>,
    /// `switchboard app create --json` output, for --create.
    #[arg(long)]
    app_json: Option<PathBuf>,
    /// With --create: stop after writing the users file.
    #[arg(long, requires = "create")]
    create_only: bool,
    /// Group chat: users in rooms of --room-size (users file order), each message sent to the
    /// sender's room and counted once per occupant (copies). One room JID per line.
    #[arg(long, requires = "room_size")]
    rooms_file: Option<PathBuf>,
    /// Occupants per room.
    #[arg(long)]
    room_size: Option<usize>,
    /// With --create: also create a group dialog per --room-size users (Switchboard) and
    /// write their room JIDs to --rooms-file.
    #[arg(long, requires_all = ["create", "rooms_file"])]
    create_rooms: bool,
    /// Each user writes to this many fixed contacts (the next users in the file) instead of
    /// anyone: the pairs, and so the private dialogs a history server keeps, stay few, as in
    /// real chat. 0: anyone.
    #[arg(long, default_value_t = 0)]
    contacts: usize,
    /// Messages ask for server-side history (QuickBlox `save_to_history`; a server with
    /// MAM archives them anyway).
    #[arg(long)]
    save_history: bool,
}

#[derive(Args)]
struct TurnArgs {
    /// TURN server host:port.
    #[arg(long)]
    server: Option<String>,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    password: Option<String>,
    #[arg(long)]
    allocations: Option<u32>,
    /// Packets per second.
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long)]
    duration: Option<f64>,
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SfuArgs {
    /// Janus WebSocket URL, ws://H:P.
    #[arg(long)]
    janus: String,
    /// quickblox (dialog rooms; --users-file) or janus (numeric rooms made with `create`).
    #[arg(long, default_value = "janus")]
    mode: String,
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Participants per room; each publishes and subscribes to every other.
    #[arg(long, default_value_t = 6)]
    participants: usize,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Load before the window, seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// A session token put on every connection's URL (`?token=`).
    #[arg(long)]
    token: Option<String>,
    /// quickblox mode: `dialog_id user_id token` per line, participants in order (written
    /// there with --create).
    #[arg(long)]
    users_file: Option<PathBuf>,
    /// quickblox mode: first create the users (rooms x participants) and one group dialog per
    /// room on Switchboard through its REST API (--api, --app-json), and sign each user in.
    #[arg(long, requires_all = ["api", "app_json"])]
    create: bool,
    /// REST API base URL for --create, e.g. https://127.0.0.1:8443.
    #[arg(long)]
    api: Option<String>,
    /// `switchboard app create --json` output, for --create.
    #[arg(long)]
    app_json: Option<PathBuf>,
    /// Accept any TLS certificate from the REST API (the server's self-signed default).
    #[arg(long)]
    tls_insecure: bool,
    /// The address the clients bind and announce.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Video bitrate each publisher sends (1,000-byte packets), plus 50 Opus packets/s.
    #[arg(long, default_value_t = 240)]
    video_kbps: u64,
    /// Publish video as three simulcast layers (rids h, m, l at 1, 1/4 and 1/16 of the rate);
    /// subscribers pin the top one with `configure` `substream` 2.
    #[arg(long)]
    simulcast: bool,
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long)]
    json: bool,
}

const NOT_IMPLEMENTED: &str = "not implemented yet: arrives with the TURN/SFU issues";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Command::Xmpp(args) => args,
        Command::Sfu(args) => return run_on_runtime(run_sfu(args)),
        Command::Turn(_) => {
            eprintln!("{NOT_IMPLEMENTED}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_xmpp(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_on_runtime(run: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_sfu(args: SfuArgs) -> anyhow::Result<()> {
    let quickblox = match args.mode.as_str() {
        "quickblox" => true,
        "janus" => false,
        other => bail!("--mode {other}: quickblox or janus"),
    };
    if args.participants < 2 || args.rooms == 0 {
        bail!("a room needs at least 2 participants, and a run at least 1 room");
    }
    sfu::AUDIENCE.store(
        (args.participants - 1) as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    let mut users_file = args.users_file;
    if args.create {
        if !quickblox {
            bail!("--create makes QuickBlox dialogs: use it with --mode quickblox");
        }
        let (Some(api), Some(app_json)) = (&args.api, &args.app_json) else {
            bail!("--create needs --api and --app-json");
        };
        let app = create::AppCredentials::read(app_json)?;
        let seats = create::create_conference_seats(
            api,
            &app,
            args.rooms,
            args.participants,
            args.tls_insecure,
        )
        .await
        .context("creating conference seats")?;
        let path = users_file.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("sfu-seats-{}.txt", std::process::id()))
        });
        let lines: String = seats
            .iter()
            .map(|s| format!("{} {} {}\n", s.dialog, s.user, s.token))
            .collect();
        std::fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "created {} seats in {} dialogs of application {}, written to {}",
            seats.len(),
            args.rooms,
            app.application_id,
            path.display()
        );
        users_file = Some(path);
    }
    let options = sfu::SfuOptions {
        janus: args.janus,
        quickblox,
        rooms: args.rooms,
        participants: args.participants,
        duration: Duration::try_from_secs_f64(args.duration).context("--duration")?,
        warmup: Duration::try_from_secs_f64(args.warmup).context("--warmup")?,
        users_file,
        token: args.token,
        server_pid: args.server_pid,
        bind_ip: args.bind,
        video_kbps: args.video_kbps,
        simulcast: args.simulcast,
    };
    let report = sfu::run(options).await?;
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

async fn run_xmpp(args: XmppArgs) -> anyhow::Result<()> {
    let seconds = |name: &str, value: f64| -> anyhow::Result<Duration> {
        Duration::try_from_secs_f64(value).with_context(|| format!("--{name} {value} is invalid"))
    };
    let rate = args.rate.unwrap_or(0.0);
    let duration = seconds("duration", args.duration.unwrap_or(0.0))?;
    let warmup = seconds("warmup", args.warmup)?;
    let drain = seconds("drain", args.drain)?;
    let login_timeout = seconds("login-timeout", args.login_timeout)?;
    if !(rate.is_finite() && rate >= 0.0) {
        bail!("--rate {rate} is invalid");
    }
    if duration.is_zero() && !args.create_only {
        bail!("--duration must be positive");
    }

    let mut users = match args.create {
        Some(count) => {
            let (Some(api), Some(app_json)) = (&args.api, &args.app_json) else {
                bail!("--create needs --api and --app-json");
            };
            let app = create::AppCredentials::read(app_json)?;
            let domain = args.domain.as_deref().unwrap_or("localhost");
            let created = create::create_users(api, &app, count, domain, args.tls_insecure)
                .await
                .context("creating users")?;
            if args.create_rooms {
                let (Some(size), Some(file)) = (args.room_size, &args.rooms_file) else {
                    bail!("--create-rooms needs --room-size and --rooms-file");
                };
                let rooms = create::create_rooms(api, &app, &created, size, args.tls_insecure)
                    .await
                    .context("creating rooms")?;
                std::fs::write(file, rooms.join("\n") + "\n")
                    .with_context(|| format!("writing {}", file.display()))?;
            }
            let users: Vec<users::User> = created.into_iter().map(|(user, _)| user).collect();
            users::write(&args.users_file, &users)?;
            eprintln!(
                "created {} users in application {}, written to {}",
                users.len(),
                app.application_id,
                args.users_file.display()
            );
            if args.create_only {
                return Ok(());
            }
            users
        }
        None => users::read(&args.users_file)?,
    };
    if let Some(limit) = args.users {
        if limit > users.len() {
            bail!(
                "--users {limit} but {} has only {}",
                args.users_file.display(),
                users.len()
            );
        }
        users.truncate(limit);
    }

    let server = args.server_pid.map(procfs::Process::new).transpose()?;
    let rooms = match (&args.rooms_file, args.room_size) {
        (Some(file), Some(size)) => {
            anyhow::ensure!(size >= 2, "--room-size must be at least 2");
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let rooms: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect();
            let needed = rooms.len() * size;
            anyhow::ensure!(
                !rooms.is_empty() && needed <= users.len(),
                "{} rooms of {size} need {needed} users, there are {}",
                rooms.len(),
                users.len()
            );
            users.truncate(needed);
            Some(xmpp::Rooms { jids: rooms, size })
        }
        _ => None,
    };
    let tls = tls::client_config(args.tls_insecure, args.ca_file.as_deref())?;
    let options = xmpp::Options {
        target: xmpp::login::Target {
            address: format!("{}:{}", args.host, args.port),
            domain: args.domain.clone(),
            tls: xmpp::login::connector(tls),
            timeout: login_timeout,
        },
        rate,
        duration,
        warmup,
        drain,
        login_concurrency: args.login_concurrency,
        server,
        save_history: args.save_history,
        contacts: args.contacts,
        rooms,
    };
    let report = xmpp::run(users, options).await?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.summary());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn contract_command_line_parses() {
        let cli = Cli::try_parse_from([
            "switchboard-loadtest",
            "xmpp",
            "--host",
            "127.0.0.1",
            "--port",
            "5222",
            "--users-file",
            "u.txt",
            "--rate",
            "100",
            "--duration",
            "10",
            "--server-pid",
            "1",
            "--json",
            "--tls-insecure",
        ])
        .unwrap();
        let Command::Xmpp(args) = cli.command else {
            panic!("not xmpp")
        };
        assert_eq!(
            (args.rate, args.duration, args.server_pid),
            (Some(100.0), Some(10.0), Some(1))
        );
        assert!(Cli::try_parse_from([
            "switchboard-loadtest",
            "xmpp",
            "--users-file",
            "u",
            "--rate",
            "1",
            "--duration",
            "1",
            "--create",
            "5"
        ])
        .is_err());
    }
}
