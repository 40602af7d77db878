//! `ledger health`: asks a node's HTTP port whether it is ready (or live),
//! for container health checks and probes: the exit status says it, and a
//! line says why not. It needs no shell or other program in the image.

use anyhow::Context;
use clap::Args;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Args)]
pub struct HealthArgs {
    /// The node's HTTP address; by default where `LEDGER_HTTP_LISTEN` says
    /// it listens (an unspecified address asked on loopback), else
    /// 127.0.0.1:8080.
    #[arg(long)]
    http: Option<String>,
    /// Only whether the node answers (`/health/live`), not whether it can
    /// take its region's traffic (`/health/ready`).
    #[arg(long)]
    live: bool,
    /// The cluster's CA (PEM), for a node that serves HTTPS (`[tls]`): its
    /// certificate must name the host of `--http`, or `--tls-server-name`.
    #[arg(long, env = "LEDGER_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    #[arg(long, env = "LEDGER_TLS_SERVER_NAME", requires = "tls_ca")]
    tls_server_name: Option<String>,
}

/// The whole exchange, connecting included.
const DEADLINE: Duration = Duration::from_secs(3);
/// The most of an answer read: a health answer is a few hundred bytes.
const ANSWER_MAX: u64 = 64 * 1024;

pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let path = if args.live {
        "/health/live"
    } else {
        "/health/ready"
    };
    let address = args
        .http
        .unwrap_or_else(|| own_address(std::env::var("LEDGER_HTTP_LISTEN").ok().as_deref()));
    let tls = match &args.tls_ca {
        Some(ca) => Some(ledger_node::tls::connector(ca)?),
        None => None,
    };
    let name = args
        .tls_server_name
        .as_deref()
        .unwrap_or_else(|| ledger_node::tls::host_of(&address))
        .to_owned();
    let answer = tokio::time::timeout(DEADLINE, get(&address, tls.map(|tls| (tls, name)), path))
        .await
        .with_context(|| format!("{address} did not answer {path} within 3 s"))??;
    let (status, body) = parse(&answer)?;
    if status == 200 {
        println!("{}", body.trim());
        Ok(())
    } else {
        anyhow::bail!("{path} answered {status}: {}", body.trim())
    }
}

/// Where to ask a node on this machine that listens at `listen`.
fn own_address(listen: Option<&str>) -> String {
    let Some(listen) = listen else {
        return "127.0.0.1:8080".to_owned();
    };
    match listen.parse::<std::net::SocketAddr>() {
        Ok(address) if address.ip().is_unspecified() => {
            let loopback = if address.is_ipv4() {
                std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST)
            } else {
                std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
            };
            std::net::SocketAddr::new(loopback, address.port()).to_string()
        }
        _ => listen.to_owned(),
    }
}

/// `GET path` of the node at `address`, over TLS with `tls` (checking
/// the name given with it).
async fn get(
    address: &str,
    tls: Option<(tokio_rustls::TlsConnector, String)>,
    path: &str,
) -> anyhow::Result<Vec<u8>> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot reach {address}"))?;
    match tls {
        None => exchange(stream, address, path).await,
        Some((connector, name)) => {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(name)
                .context("the TLS server name")?;
            let stream = connector
                .connect(name, stream)
                .await
                .with_context(|| format!("TLS with {address}"))?;
            exchange(stream, address, path).await
        }
    }
}

async fn exchange<S>(mut stream: S, address: &str, path: &str) -> anyhow::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    let read = (&mut stream)
        .take(ANSWER_MAX)
        .read_to_end(&mut answer)
        .await;
    match read {
        Ok(_) => Ok(answer),
        // A TLS peer that closes without close_notify has still answered.
        Err(_) if !answer.is_empty() => Ok(answer),
        Err(error) => Err(error.into()),
    }
}

/// The status code and body of an HTTP/1.1 answer.
fn parse(answer: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the answer is not HTTP")?;
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .context("the answer has no status line")?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::{own_address, parse};

    #[test]
    fn a_node_is_asked_where_it_listens() {
        assert_eq!(own_address(None), "127.0.0.1:8080");
        assert_eq!(own_address(Some("0.0.0.0:9090")), "127.0.0.1:9090");
        assert_eq!(own_address(Some("[::]:9090")), "[::1]:9090");
        assert_eq!(own_address(Some("10.1.2.3:80")), "10.1.2.3:80");
        assert_eq!(own_address(Some("node-1:80")), "node-1:80");
    }

    #[test]
    fn an_answer_gives_its_status_and_body() {
        let answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\r\n{\"status\":\"not ready\"}";
        let (status, body) = parse(answer).expect("parsed");
        assert_eq!((status, body.as_str()), (503, "{\"status\":\"not ready\"}"));
        assert!(parse(b"SSH-2.0-OpenSSH").is_err());
        assert!(parse(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }
}
