//! `ballast lock PREFIX COMMAND`: runs COMMAND while holding a lock in the KV, like
//! `consul lock`. A session (TTL, renewed at half of it) acquires `PREFIX/.lock`; the
//! command starts once the lock is held. When the lock is lost (the key no longer names
//! the session, the agent stops answering, renewals fail for a TTL) the command is
//! stopped (SIGTERM, then SIGKILL after `--kill-timeout`) before anyone else can hold the
//! lock: the session's lock delay keeps the key free of new holders for that long after
//! the cluster invalidates it. When the command ends, the lock is released and the
//! session destroyed; `ballast lock` exits with the command's code.
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use ballast_control::client::{escape_key, ApiClient};
use bytes::Bytes;
use clap::Args;
use hyper::{Method, StatusCode};

use super::{runtime, ApiArgs};

#[derive(Args)]
pub struct LockArgs {
    /// The session's name.
    #[arg(long, default_value = "ballast lock")]
    name: String,
    /// The session's TTL (renewed every half of it; at least 10s, as in Consul).
    #[arg(long, default_value = "15s")]
    ttl: String,
    /// How long the key stays unacquirable after the session is invalidated.
    #[arg(long = "lock-delay", default_value = "15s")]
    lock_delay: String,
    /// Give up (exit 1) if the lock is not held within this long (0: wait forever).
    #[arg(long, default_value = "0s")]
    timeout: String,
    /// How long the command has between SIGTERM and SIGKILL when the lock is lost.
    #[arg(long = "kill-timeout", default_value = "5s")]
    kill_timeout: String,
    /// The KV prefix; the lock is the key `PREFIX/.lock`.
    prefix: String,
    /// The command, run by `sh -c`.
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
    #[command(flatten)]
    api: ApiArgs,
}

fn duration(flag: &str, v: &str) -> Result<Duration> {
    ballast_control::duration::parse_duration(v).map_err(|e| anyhow::anyhow!("--{flag} {v:?}: {e}"))
}

pub fn run(a: LockArgs) -> Result<()> {
    let ttl = duration("ttl", &a.ttl)?;
    if ttl < Duration::from_secs(10) {
        bail!("--ttl {}: at least 10s", a.ttl);
    }
    duration("lock-delay", &a.lock_delay)?;
    let timeout = duration("timeout", &a.timeout)?;
    let kill_timeout = duration("kill-timeout", &a.kill_timeout)?;
    let code = runtime()?.block_on(async move {
        let c = ApiClient::new(&a.api.http_addr, a.api.token.clone());
        let key = format!("{}/.lock", a.prefix.trim_end_matches('/'));
        let body = serde_json::json!({
            "Name": a.name, "TTL": a.ttl, "LockDelay": a.lock_delay, "Behavior": "release",
        });
        let r = c
            .call(Method::PUT, "/v1/session/create", Bytes::from(body.to_string()))
            .await
            .map_err(anyhow::Error::msg)?;
        super::expect_ok(&r).context("creating the session")?;
        let id = serde_json::from_slice::<serde_json::Value>(&r.body)?["ID"]
            .as_str()
            .context("no session ID in the answer")?
            .to_string();
        let held = Lock { c: &c, key: &key, session: &id };
        let result = held.run(&a.command.join(" "), ttl, timeout, kill_timeout).await;
        // Best effort: the session's end releases the key (behavior release).
        let _ = c.call(Method::PUT, &format!("/v1/session/destroy/{id}"), Bytes::new()).await;
        result
    })?;
    std::process::exit(code)
}

struct Lock<'a> {
    c: &'a ApiClient,
    key: &'a str,
    session: &'a str,
}

impl Lock<'_> {
    async fn run(&self, command: &str, ttl: Duration, timeout: Duration, kill_timeout: Duration) -> Result<i32> {
        let renew = self.renew(ttl);
        tokio::pin!(renew);
        let acquired = async {
            if timeout.is_zero() {
                self.acquire().await
            } else {
                tokio::time::timeout(timeout, self.acquire()).await.unwrap_or_else(|_| bail!("lock not held within {timeout:?}"))
            }
        };
        tokio::select! {
            r = acquired => r?,
            e = &mut renew => return Err(e),
        }
        log::info!("lock {} held by session {}; running: {command}", self.key, self.session);
        let mut child = child_process(command)?;
        let why = tokio::select! {
            status = child.wait() => {
                let status = status.context("waiting for the command")?;
                let r = self.c.call(Method::PUT, &format!("/v1/kv/{}?release={}", escape_key(self.key), self.session), Bytes::new()).await;
                if let Err(e) = r {
                    log::warn!("releasing {}: {e}", self.key);
                }
                return Ok(status.code().unwrap_or(1));
            }
            e = &mut renew => e,
            e = self.monitor() => e,
            _ = shutdown() => anyhow::anyhow!("interrupted"),
        };
        log::warn!("lock {} lost ({why:#}): stopping the command", self.key);
        stop(&mut child, kill_timeout).await;
        Ok(1)
    }

    /// Tries to acquire until it holds the lock: after each refusal it waits for the key
    /// to change (a blocking query), or, when the key is free, polls every half second
    /// (the lock delay of a holder's invalidated session).
    async fn acquire(&self) -> Result<()> {
        let path = format!("/v1/kv/{}", escape_key(self.key));
        let mut index = 0;
        loop {
            let q = format!("{path}?acquire={}", self.session);
            let r = self.c.call(Method::PUT, &q, Bytes::new()).await.map_err(anyhow::Error::msg)?;
            super::expect_ok(&r).context("acquiring the lock")?;
            if r.body.as_ref() == b"true" {
                return Ok(());
            }
            let r = self
                .c
                .call(Method::GET, &format!("{path}?index={index}&wait=15s"), Bytes::new())
                .await
                .map_err(anyhow::Error::msg)?;
            index = r.index.unwrap_or(0);
            // Free yet refused: the lock delay of a holder whose session was invalidated.
            // Poll through it instead of blocking on a key that will not change.
            if r.status == StatusCode::NOT_FOUND || holder(&r.body).is_none() {
                tokio::time::sleep(Duration::from_millis(500)).await;
                index = 0;
            }
        }
    }

    /// Renews the session every half TTL; returns (as the reason) once no renewal has
    /// succeeded for a whole TTL, or the session is gone.
    async fn renew(&self, ttl: Duration) -> anyhow::Error {
        let mut last_ok = tokio::time::Instant::now();
        loop {
            let wait = if last_ok.elapsed() < ttl / 2 { ttl / 2 } else { Duration::from_secs(1) };
            tokio::time::sleep(wait).await;
            match self.c.call(Method::PUT, &format!("/v1/session/renew/{}", self.session), Bytes::new()).await {
                Ok(r) if r.status.is_success() => last_ok = tokio::time::Instant::now(),
                Ok(r) if r.status == StatusCode::NOT_FOUND => return anyhow::anyhow!("the session was invalidated"),
                Ok(r) => log::warn!("renewing session {}: {}", self.session, r.status),
                Err(e) => log::warn!("renewing session {}: {e}", self.session),
            }
            if last_ok.elapsed() >= ttl {
                return anyhow::anyhow!("no renewal for {ttl:?}");
            }
        }
    }

    /// Watches the key; returns (as the reason) when it names another session or none,
    /// or when the agent fails three queries in a row (about 3 s, far below the lock
    /// delay that keeps others out after the session is invalidated).
    async fn monitor(&self) -> anyhow::Error {
        let path = format!("/v1/kv/{}", escape_key(self.key));
        let (mut index, mut failures) = (0u64, 0u32);
        loop {
            match self.c.call(Method::GET, &format!("{path}?index={index}&wait=15s"), Bytes::new()).await {
                Ok(r) if r.status == StatusCode::NOT_FOUND => return anyhow::anyhow!("the lock key was deleted"),
                Ok(r) if r.status.is_success() => {
                    failures = 0;
                    if holder(&r.body).as_deref() != Some(self.session) {
                        return anyhow::anyhow!("the lock is held by another session or none");
                    }
                    index = r.index.unwrap_or(0);
                }
                other => {
                    failures += 1;
                    log::warn!("watching {}: {other:?}", self.key);
                    if failures >= 3 {
                        return anyhow::anyhow!("the agent does not answer");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// The session named in a KV GET answer.
fn holder(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get(0)?.get("Session")?.as_str().map(String::from)
}

fn child_process(command: &str) -> Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg(command);
    // If ballast lock itself dies (kill -9), the command must not run on unlocked.
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().with_context(|| format!("starting sh -c {command:?}"))
}

async fn stop(child: &mut tokio::process::Child, grace: Duration) {
    if let Some(pid) = child.id() {
        // SAFETY: a plain kill(2) of our own child's pid.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::holder;

    #[test]
    fn the_holder_is_read_from_a_kv_answer() {
        assert_eq!(holder(br#"[{"Key":"a/.lock","Session":"s1"}]"#).as_deref(), Some("s1"));
        assert_eq!(holder(br#"[{"Key":"a/.lock"}]"#), None);
        assert_eq!(holder(b"not json"), None);
    }
}
