//! The L7 proxy (HAProxy's job in the seeds): listeners from an `L7Config`, HTTP/1.1 and
//! HTTP/2 to clients (hyper), pooled keep-alive HTTP/1.1 to servers, `mode tcp` proxies,
//! health checks and the stats page.
pub mod checks;
pub mod http;
pub mod state;
pub mod stats;
pub mod tcp;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::haproxy::{model::Mode, L7Config};
pub use state::Shared;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot bind {addr} (proxy '{proxy}'): {source}")]
    Bind { proxy: String, addr: SocketAddr, source: std::io::Error },
}

/// Binds every listener (all or nothing), starts the health checks, and serves until
/// `shutdown` completes. Returns the shared state for stats and the runtime API.
pub async fn run(config: L7Config, shutdown: impl Future<Output = ()>) -> Result<Arc<Shared>, ProxyError> {
    let (shared, tasks) = start(config).await?;
    shutdown.await;
    for t in tasks {
        t.abort();
    }
    Ok(shared)
}

/// Binds and spawns everything; the caller owns the tasks (abort them to stop).
pub async fn start(config: L7Config) -> Result<(Arc<Shared>, Vec<tokio::task::JoinHandle<()>>), ProxyError> {
    let shared = state::build(&config);
    let mut listeners = Vec::new();
    for fe in &shared.frontends {
        for b in &fe.cfg.binds {
            let l = TcpListener::bind(b.addr).await.map_err(|source| ProxyError::Bind {
                proxy: fe.cfg.name.clone(),
                addr: b.addr,
                source,
            })?;
            listeners.push((fe.clone(), l));
        }
    }
    let mut tasks = Vec::new();
    for be in shared.backends.values() {
        tasks.extend(checks::spawn(be.clone()));
    }
    for (fe, listener) in listeners {
        let shared = shared.clone();
        // Frontend maxconn: connections beyond it wait in the kernel's accept queue.
        let limit = Arc::new(Semaphore::new(fe.cfg.settings.maxconn.max(1) as usize));
        tasks.push(tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            let read_timeout = fe
                .cfg
                .settings
                .timeouts
                .http_request
                .or(fe.cfg.settings.timeouts.client)
                .unwrap_or(Duration::from_secs(30));
            builder.http1().timer(TokioTimer::new()).header_read_timeout(read_timeout).keep_alive(true);
            builder.http2().timer(TokioTimer::new());
            let builder = Arc::new(builder);
            loop {
                let Ok(permit) = limit.clone().acquire_owned().await else { return };
                let (stream, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        log::warn!("accept on {}: {e}", fe.cfg.name);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (shared, fe, builder) = (shared.clone(), fe.clone(), builder.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    if fe.cfg.settings.mode == Mode::Tcp {
                        tcp::serve(&shared, &fe, stream, peer).await;
                        return;
                    }
                    let svc = service_fn(move |req| http::handle(shared.clone(), fe.clone(), peer, req));
                    let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
                });
            }
        }));
    }
    Ok((shared, tasks))
}
