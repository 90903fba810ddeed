//! `roomserver-http <config.toml>`: serves federation until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use roomserver_http::config::Config;
use roomserver_http::server::{build, serve};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

async fn stop_signal() {
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, path] = args.as_slice() else {
        eprintln!("usage: roomserver-http <config.toml>");
        return ExitCode::from(2);
    };
    let config = match Config::load(&PathBuf::from(path)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("roomserver-http: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (app, tls) = match build(&config) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("roomserver-http: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(config.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("roomserver-http: listen on {}: {e}", config.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!("roomserver-http: {} listening on {}", config.server_name, config.listen);
    serve(listener, tls, app, stop_signal()).await;
    eprintln!("roomserver-http: stopped");
    ExitCode::SUCCESS
}
