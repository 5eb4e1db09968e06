//! The `switchyard` binary: parses the command line and hands over to the library.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard::client::cli::{self as client_cli, ClientCommand};
use switchyard::server;

// The publish path allocates many small buffers from several threads at once; glibc's
// arenas fragment under that pattern and keep freed memory, mimalloc returns it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A local-first event router: topics, queues, streams and WebAssembly functions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the router.
    Serve(ServeArgs),
    /// Check filter policies without a server.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run a function on one event and show its result, logs and published events.
    Invoke(switchyard::client::functions::InvokeArgs),
    /// Start a handler project in Rust, Python or JavaScript that builds with one command.
    New(NewArgs),
    #[command(flatten)]
    Client(ClientCommand),
}

#[derive(clap::Args)]
struct NewArgs {
    /// The handler's name, which names its directory and component too.
    name: String,
    /// The language to write it in.
    #[arg(long, default_value = "rust", value_parser = ["rust", "python", "js"])]
    lang: String,
    /// Where to create the project (default: ./NAME).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Does a policy match a message? Prints `match` (exit 0) or `no match` (exit 1); an
    /// invalid policy or message exits 2. With --jsonl, answers JSON lines from stdin.
    Test(PolicyTestArgs),
}

#[derive(clap::Args)]
struct PolicyTestArgs {
    /// The filter policy (JSON).
    #[arg(long, required_unless_present = "jsonl")]
    policy: Option<String>,
    /// What the policy looks at.
    #[arg(long, default_value = "attributes", value_parser = ["attributes", "body", "MessageAttributes", "MessageBody"])]
    scope: String,
    /// The message body, as published (body scope).
    #[arg(long, conflicts_with = "jsonl")]
    message: Option<String>,
    /// Message attributes: {"Name": "value"} or the SNS form {"Name": {"Type": …, "Value": …}}.
    #[arg(long, conflicts_with = "jsonl")]
    attributes: Option<String>,
    /// Read cases as JSON lines on stdin, one answer line each:
    /// {"policy", "scope", "attributes" | "body" | "body_raw"} -> {"match": bool} or {"error": …}.
    #[arg(long)]
    jsonl: bool,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML file declaring topics, queues and subscriptions; applied at start.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the embedded backend keeps its data.
    #[arg(long, default_value = "./switchyard-data")]
    data_dir: PathBuf,
    /// Where compiled WebAssembly components are cached (default: DATA_DIR/compiled). Safe
    /// to share between servers: entries are keyed by the component's hash and the engine.
    #[arg(long, env = "SWITCHYARD_COMPILED_CACHE")]
    compiled_cache: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// Storage backend: `embedded` (default, data in --data-dir) or `nats://HOST:PORT`
    /// (NATS JetStream; every router pointed at it with the same --nats-prefix shares all
    /// topics, queues, streams and functions). For a cluster, list several of its servers
    /// separated by commas: the router starts with any that answers.
    #[arg(long, default_value = "embedded")]
    backend: String,
    /// With a NATS backend: the name that starts every stream, subject and bucket of this
    /// deployment, so several deployments can share one NATS.
    #[arg(long, default_value = "switchyard")]
    nats_prefix: String,
    /// With a NATS backend: on how many servers every stream, consumer and bucket is kept
    /// (1 to 5; 3 for a production cluster, which then survives the loss of one server).
    /// Streams made earlier with another count are brought to this one at start; give
    /// every router of a deployment the same value.
    #[arg(long, default_value_t = 1)]
    nats_replicas: usize,
    /// Require `Authorization: Bearer TOKEN` on every /v1 call (and AWS requests signed
    /// with it as the secret key).
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Require the token on /metrics too (a scraper then sends it as a bearer token).
    #[arg(long, requires = "token")]
    token_metrics: bool,
    /// Refuse webhook subscriptions and deliveries, and functions' outbound requests, to
    /// private and loopback addresses (for servers that accept subscriptions and functions
    /// from untrusted users; off for local work).
    #[arg(long)]
    deny_private_endpoints: bool,
    /// Export spans of every publish, delivery attempt and invocation over OTLP/HTTP to
    /// the collector at this base URL (`/v1/traces` is appended), e.g.
    /// http://127.0.0.1:4318. Off by default.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = otlp_endpoint)]
    otlp_endpoint: Option<String>,
    /// With the embedded backend: free space (MiB) kept on the data directory's disk.
    /// Below it, publishes, sends, stream puts and new resources are refused (507) until
    /// space is freed, while reads, receives and acks go on; 0 turns the check off.
    #[arg(long, default_value_t = 128)]
    min_free_disk_mb: u64,
}

/// An OTLP collector's base URL: http or https, with a host.
fn otlp_endpoint(value: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("an OTLP/HTTP collector's URL is http:// or https:// and names a host".into());
    }
    Ok(value.to_string())
}

fn main() -> ExitCode {
    switchyard::server::disable_transparent_huge_pages();
    let cli = Cli::parse();
    if let Command::Policy(PolicyCommand::Test(args)) = &cli.command {
        return policy_test(args);
    }
    if let Command::New(args) = &cli.command {
        return new_handler(args);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into()),
        )
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime builds on any supported OS");
    match cli.command {
        Command::Serve(args) => rt.block_on(serve(args)),
        Command::Policy(_) | Command::New(_) => unreachable!("handled before the runtime starts"),
        Command::Invoke(args) => rt.block_on(switchyard::client::functions::run_invoke(args)),
        Command::Client(cmd) => rt.block_on(client_cli::run(cmd)).unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }),
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let backend =
        match server::BackendChoice::parse(&args.backend, &args.nats_prefix, args.nats_replicas) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
    let prepared = match server::prepare(server::Options {
        backend,
        data_dir: args.data_dir,
        compiled_cache: args.compiled_cache,
        config: args.config,
        token: args.token,
        token_metrics: args.token_metrics,
        deny_private_endpoints: args.deny_private_endpoints,
        otlp_endpoint: args.otlp_endpoint,
        min_free_disk: args.min_free_disk_mb.saturating_mul(1 << 20),
    })
    .await
    {
        Ok(p) => p,
        Err(server::PrepareError::Config(errors)) => {
            for e in &errors {
                eprintln!("config error: {e}");
            }
            eprintln!("{} config error(s); nothing was started", errors.len());
            return ExitCode::from(2);
        }
        Err(server::PrepareError::Other(e)) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    release_freed_memory();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .expect("a bound socket has an address");
    // The one line on stdout: scripts and tests read the chosen address from it.
    println!("listening on {addr}");
    tokio::spawn(purge_freed_memory());
    match server::run(listener, prepared, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc gives freed memory back to the OS a purge delay (1 s) after it is freed, but
/// only when some thread next asks it for pages. Once a burst of writes is over nothing
/// does, and what the burst freed stays resident: about 100 MB for good after a million
/// 1 KiB messages were backlogged at full speed (fjall's flushed memtables among it).
/// Asking once a second purges whatever has waited out the delay. A shorter delay instead
/// would purge pages the next requests reuse (measured: publish throughput 10% lower at
/// 10 ms).
async fn purge_freed_memory() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // SAFETY: mi_collect only runs mimalloc's own bookkeeping for the calling thread
        // and purges expired free ranges of the process's arenas; it takes no pointers.
        unsafe { libmimalloc_sys::mi_collect(false) };
    }
}

/// Gives back at once what a start allocated and freed: reading every stored topic,
/// subscription and queue at once frees far more than it keeps, and the periodic purge
/// would wait its delay and the next allocation to give it back.
fn release_freed_memory() {
    // SAFETY: as in `purge_freed_memory`; forced, it also purges ranges whose delay has
    // not passed.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler cannot fail on unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn policy_test(args: &PolicyTestArgs) -> ExitCode {
    use switchyard::policy_test;
    if args.jsonl {
        let stdin = std::io::stdin().lock();
        let stdout = std::io::stdout().lock();
        return match policy_test::run_jsonl(stdin, std::io::BufWriter::new(stdout)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    let fail = |msg: String| {
        eprintln!("error: {msg}");
        ExitCode::from(2)
    };
    let policy: serde_json::Value = match serde_json::from_str(args.policy.as_deref().unwrap_or(""))
    {
        Ok(p) => p,
        Err(e) => return fail(format!("--policy is not valid JSON: {e}")),
    };
    let scope = match policy_test::parse_scope(&args.scope) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let attrs = match &args.attributes {
        None => switchyard::model::attributes::Attributes::new(),
        Some(text) => match serde_json::from_str(text)
            .map_err(|e| format!("--attributes is not valid JSON: {e}"))
            .and_then(|v: serde_json::Value| {
                switchyard::model::attributes::from_api(Some(&v)).map_err(|e| e.to_string())
            }) {
            Ok(a) => a,
            Err(e) => return fail(e),
        },
    };
    let body = args.message.as_deref().unwrap_or("").as_bytes();
    match policy_test::evaluate(&policy, scope, body, &attrs) {
        Ok(true) => {
            println!("match");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("no match");
            ExitCode::from(1)
        }
        Err(e) => fail(e),
    }
}

fn new_handler(args: &NewArgs) -> ExitCode {
    use switchyard::runtime::scaffold::{Language, create};
    let lang = match args.lang.as_str() {
        "python" => Language::Python,
        "js" => Language::JavaScript,
        _ => Language::Rust,
    };
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    match create(&args.name, lang, &dir) {
        Ok(made) => {
            println!(
                "created {} ({} handler)\nbuild it:  cd {} && {}\nthe component: {}",
                dir.display(),
                args.lang,
                dir.display(),
                made.build_command,
                made.component.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
