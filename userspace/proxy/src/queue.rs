//! A server's `maxconn` slots and its queue: a request takes a free slot at once, or waits
//! for one up to `timeout queue` (then the caller answers 503). The slot is a semaphore
//! permit held for the life of the request, as in mini-redis' connection limit.
use std::{
    sync::{
        atomic::{AtomicU32, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why no slot was obtained.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueTimeout;

/// Takes a slot of `slots` (None = no maxconn: nothing to take), waiting at most `wait`.
/// `qcur`/`qmax` count the requests waiting, for the stats.
pub async fn acquire(
    slots: Option<&Arc<Semaphore>>,
    wait: Duration,
    qcur: &AtomicU32,
    qmax: &AtomicU32,
) -> Result<Option<OwnedSemaphorePermit>, QueueTimeout> {
    let Some(sem) = slots else { return Ok(None) };
    if let Ok(p) = sem.clone().try_acquire_owned() {
        return Ok(Some(p));
    }
    let q = qcur.fetch_add(1, Relaxed) + 1;
    qmax.fetch_max(q, Relaxed);
    let r = tokio::time::timeout(wait, sem.clone().acquire_owned()).await;
    qcur.fetch_sub(1, Relaxed);
    match r {
        Ok(Ok(p)) => Ok(Some(p)),
        _ => Err(QueueTimeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn free_slot_at_once_then_queue_then_timeout() {
        let sem = Arc::new(Semaphore::new(1));
        let (qcur, qmax) = (AtomicU32::new(0), AtomicU32::new(0));
        let wait = Duration::from_millis(200);
        let first = acquire(Some(&sem), wait, &qcur, &qmax).await.unwrap();
        assert!(first.is_some());
        // Full: the second waits, and times out after exactly `timeout queue`.
        let t0 = tokio::time::Instant::now();
        assert_eq!(acquire(Some(&sem), wait, &qcur, &qmax).await.unwrap_err(), QueueTimeout);
        assert_eq!(t0.elapsed(), wait);
        assert_eq!((qcur.load(Relaxed), qmax.load(Relaxed)), (0, 1));
        // A slot freed while waiting is handed to the waiter.
        let sem2 = sem.clone();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(first);
            sem2
        });
        let t0 = tokio::time::Instant::now();
        let got = acquire(Some(&sem), wait, &qcur, &qmax).await.unwrap();
        assert!(got.is_some());
        assert_eq!(t0.elapsed(), Duration::from_millis(50));
        release.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_order_and_no_limit_means_no_wait() {
        let sem = Arc::new(Semaphore::new(1));
        let (qcur, qmax) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let held = acquire(Some(&sem), Duration::from_secs(1), &qcur, &qmax).await.unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (sem, qcur, qmax, order) = (sem.clone(), qcur.clone(), qmax.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let p = acquire(Some(&sem), Duration::from_secs(10), &qcur, &qmax).await.unwrap();
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(p);
            }));
            tokio::task::yield_now().await;
        }
        tokio::task::yield_now().await;
        assert_eq!(qmax.load(Relaxed), 3);
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2], "FIFO, like HAProxy's queue");
        assert!(acquire(None, Duration::ZERO, &qcur, &qmax).await.unwrap().is_none());
    }
}
