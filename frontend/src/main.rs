//! `roomserver-http <config.toml>`: serves federation until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use roomserver_http::config::Config;
use roomserver_http::server::{build, serve, serve_plain, Built};
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
    let Built { federation, tls, admin } = match build(&config) {
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
    // One stop signal for both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let admin_task = match (admin, &config.admin) {
        (Some(app), Some(admin_config)) => match TcpListener::bind(admin_config.listen).await {
            Ok(l) => {
                eprintln!("roomserver-http: admin API on http://{}", admin_config.listen);
                let mut stopped = stopped.clone();
                Some(tokio::spawn(serve_plain(l, app, async move {
                    let _ = stopped.changed().await;
                })))
            }
            Err(e) => {
                eprintln!("roomserver-http: admin_listen {}: {e}", admin_config.listen);
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    eprintln!("roomserver-http: {} listening on {}", config.server_name, config.listen);
    let mut federation_stopped = stopped.clone();
    let federation_task = tokio::spawn(serve(listener, tls, federation, async move {
        let _ = federation_stopped.changed().await;
    }));
    stop_signal().await;
    let _ = stop.send(true);
    let _ = federation_task.await;
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    eprintln!("roomserver-http: stopped");
    ExitCode::SUCCESS
}
