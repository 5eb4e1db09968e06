//! The `switchyard` binary: parses the command line and hands over to the library.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard::client::cli::{self as client_cli, ClientCommand};
use switchyard::server;

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
    #[command(flatten)]
    Client(ClientCommand),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML file declaring topics, queues and subscriptions; applied at start.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the embedded backend keeps its data.
    #[arg(long, default_value = "./switchyard-data")]
    data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// Storage backend: `embedded` (default).
    #[arg(long, default_value = "embedded")]
    backend: String,
    /// Require `Authorization: Bearer TOKEN` on every /v1 call.
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Command::Client(cmd) => rt.block_on(client_cli::run(cmd)).unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }),
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    if args.backend != "embedded" {
        eprintln!(
            "error: backend {:?} is not available in this build; use --backend embedded",
            args.backend
        );
        return ExitCode::from(2);
    }
    let prepared = match server::prepare(server::Options {
        data_dir: args.data_dir,
        config: args.config,
        token: args.token,
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
    match server::run(listener, prepared, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
