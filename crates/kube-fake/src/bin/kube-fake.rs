//! `kube-fake`: the fake Kubernetes API server (and, with `--kubelet`, a fake node running pods
//! as Docker containers) as a program, for kubectl and people. Prints the server's URL on the
//! first line of stdout, optionally writes a kubeconfig, and runs until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use kube_fake::{FakeCluster, KubeletOptions, Options};

const USAGE: &str = "usage: kube-fake [--port N] [--kubeconfig PATH] [--namespace NS] \
[--history N] [--runtime-class NAME]... [--kubelet [--network NAME] [--node-name NAME] [--gpus N] \
[--cpus MILLIS] [--memory BYTES] [--docker-socket URL]]";

struct Args {
    port: u16,
    kubeconfig: Option<PathBuf>,
    namespace: String,
    opts: Options,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        port: 0,
        kubeconfig: None,
        namespace: "default".into(),
        opts: Options::default(),
    };
    let mut kubelet = KubeletOptions::default();
    let mut with_kubelet = false;
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: not a number: {v}"))
        };
        match a.as_str() {
            "--port" => {
                let v = value("--port")?;
                args.port = v.parse().map_err(|_| format!("--port: not a port: {v}"))?;
            }
            "--kubeconfig" => args.kubeconfig = Some(PathBuf::from(value("--kubeconfig")?)),
            "--namespace" => args.namespace = value("--namespace")?,
            "--history" => {
                let v = value("--history")?;
                args.opts.history =
                    usize::try_from(number("--history", v)?).map_err(|e| e.to_string())?;
            }
            "--runtime-class" => args.opts.runtime_classes.push(value("--runtime-class")?),
            "--kubelet" => with_kubelet = true,
            "--network" => kubelet.network = value("--network")?,
            "--node-name" => kubelet.node_name = value("--node-name")?,
            "--gpus" => {
                let v = value("--gpus")?;
                kubelet.gpus = u32::try_from(number("--gpus", v)?).map_err(|e| e.to_string())?;
            }
            "--cpus" => {
                let v = value("--cpus")?;
                kubelet.cpu_millis = number("--cpus", v)?;
            }
            "--memory" => {
                let v = value("--memory")?;
                kubelet.memory_bytes = number("--memory", v)?;
            }
            "--docker-socket" => kubelet.docker_socket = Some(value("--docker-socket")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if with_kubelet {
        args.opts.kubelet = Some(kubelet);
    }
    Ok(args)
}

async fn signalled() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, only being killed stops the server.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUBE_FAKE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("kube-fake: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let cluster = match FakeCluster::start_on(args.opts, addr).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", cluster.url());
    if let Some(path) = &args.kubeconfig {
        if let Err(e) = cluster.write_kubeconfig(path, &args.namespace) {
            eprintln!("kube-fake: writing {}: {e}", path.display());
            cluster.shutdown().await;
            return ExitCode::FAILURE;
        }
        eprintln!("kube-fake: kubeconfig written to {}", path.display());
    }
    signalled().await;
    eprintln!("kube-fake: shutting down");
    cluster.shutdown().await;
    ExitCode::SUCCESS
}
