//! A server's `maxconn` slots and its queue: a request takes a free slot at once, or waits
//! for one up to `timeout queue` (then the caller answers 503). The slot is a semaphore
//! permit held for the life of the request, as in mini-redis' connection limit; its
//! release also wakes the oldest request waiting in the backend's queue (`backend_queue`),
//! which takes a slot on whichever server has one.
use std::{
    sync::{
        atomic::{AtomicU32, Ordering::Relaxed},
        Arc,
    },
    time::Duration,
};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Why no slot was obtained.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueTimeout;

/// A request's slot on a server (nothing to hold without `maxconn`), held for the life of
/// the request; its release wakes the backend's queue.
#[derive(Debug)]
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Slot {
    pub fn unlimited(freed: &Arc<Notify>) -> Slot {
        Slot { permit: None, freed: freed.clone() }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.permit.take().is_some() {
            self.freed.notify_one();
        }
    }
}

/// A slot of `slots` now, if one is free (None = no maxconn: always).
pub fn try_take(slots: Option<&Arc<Semaphore>>, freed: &Arc<Notify>) -> Option<Slot> {
    match slots {
        None => Some(Slot::unlimited(freed)),
        Some(sem) => {
            sem.clone().try_acquire_owned().ok().map(|p| Slot { permit: Some(p), freed: freed.clone() })
        }
    }
}

/// Takes a slot of `slots` (None = no maxconn: nothing to take), waiting at most `wait`
/// in this server's own queue. `qcur`/`qmax` count the requests waiting, for the stats.
pub async fn acquire(
    slots: Option<&Arc<Semaphore>>,
    freed: &Arc<Notify>,
    wait: Duration,
    qcur: &AtomicU32,
    qmax: &AtomicU32,
) -> Result<Slot, QueueTimeout> {
    if let Some(slot) = try_take(slots, freed) {
        return Ok(slot);
    }
    let Some(sem) = slots else { unreachable!("no maxconn: a slot is always free") };
    let q = qcur.fetch_add(1, Relaxed) + 1;
    qmax.fetch_max(q, Relaxed);
    let r = tokio::time::timeout(wait, sem.clone().acquire_owned()).await;
    qcur.fetch_sub(1, Relaxed);
    match r {
        Ok(Ok(p)) => Ok(Slot { permit: Some(p), freed: freed.clone() }),
        _ => Err(QueueTimeout),
    }
}

/// What the backend's queue got a request.
pub enum Assigned<T> {
    Got(T),
    /// No server can take requests at all.
    NoServer,
}

/// The backend-wide queue: `take` tries to get a request a server with a free slot; while
/// every usable server is full (`take` answers None) the request waits here, first come
/// first served, until a slot frees anywhere, up to `wait`.
pub async fn backend_queue<T>(
    freed: &Notify,
    wait: Duration,
    qcur: &AtomicU32,
    qmax: &AtomicU32,
    mut take: impl FnMut() -> Option<Assigned<T>>,
) -> Result<Assigned<T>, QueueTimeout> {
    // The common case, a free slot, registers nothing (a waiter list is a shared lock).
    if let Some(a) = take() {
        return Ok(a);
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut queued = false;
    let result = loop {
        // Registered before looking, so a slot freed in between is not missed.
        let notified = freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(a) = take() {
            break Ok(a);
        }
        if !queued {
            queued = true;
            let q = qcur.fetch_add(1, Relaxed) + 1;
            qmax.fetch_max(q, Relaxed);
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            break Err(QueueTimeout);
        }
    };
    if queued {
        qcur.fetch_sub(1, Relaxed);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn free_slot_at_once_then_queue_then_timeout() {
        let sem = Arc::new(Semaphore::new(1));
        let freed = Arc::new(Notify::new());
        let (qcur, qmax) = (AtomicU32::new(0), AtomicU32::new(0));
        let wait = Duration::from_millis(200);
        let first = acquire(Some(&sem), &freed, wait, &qcur, &qmax).await.unwrap();
        assert!(first.permit.is_some());
        // Full: the second waits, and times out after exactly `timeout queue`.
        let t0 = tokio::time::Instant::now();
        assert_eq!(acquire(Some(&sem), &freed, wait, &qcur, &qmax).await.unwrap_err(), QueueTimeout);
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
        let got = acquire(Some(&sem), &freed, wait, &qcur, &qmax).await.unwrap();
        assert!(got.permit.is_some());
        assert_eq!(t0.elapsed(), Duration::from_millis(50));
        release.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_order_and_no_limit_means_no_wait() {
        let sem = Arc::new(Semaphore::new(1));
        let freed = Arc::new(Notify::new());
        let (qcur, qmax) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let held = acquire(Some(&sem), &freed, Duration::from_secs(1), &qcur, &qmax).await.unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (sem, qcur, qmax, order, freed) =
                (sem.clone(), qcur.clone(), qmax.clone(), order.clone(), freed.clone());
            tasks.push(tokio::spawn(async move {
                let p = acquire(Some(&sem), &freed, Duration::from_secs(10), &qcur, &qmax).await.unwrap();
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
        assert!(acquire(None, &freed, Duration::ZERO, &qcur, &qmax).await.unwrap().permit.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_backend_queue_takes_a_slot_freed_on_any_server() {
        let freed = Arc::new(Notify::new());
        let servers = [Arc::new(Semaphore::new(1)), Arc::new(Semaphore::new(1))];
        let (qcur, qmax) = (AtomicU32::new(0), AtomicU32::new(0));
        let take = || servers.iter().enumerate().find_map(|(i, s)| try_take(Some(s), &freed).map(|t| Assigned::Got((i, t))));
        let Ok(Assigned::Got((0, a))) = backend_queue(&freed, Duration::from_secs(1), &qcur, &qmax, take).await else { panic!() };
        let Ok(Assigned::Got((1, b))) = backend_queue(&freed, Duration::from_secs(1), &qcur, &qmax, take).await else { panic!() };
        // Both full: the next waits until either frees (here the second, after 30 ms).
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(b);
        });
        let t0 = tokio::time::Instant::now();
        let Ok(Assigned::Got((1, _c))) = backend_queue(&freed, Duration::from_secs(1), &qcur, &qmax, take).await else { panic!() };
        assert_eq!(t0.elapsed(), Duration::from_millis(30));
        assert_eq!((qcur.load(Relaxed), qmax.load(Relaxed)), (0, 1));
        release.await.unwrap();
        // Nothing frees: `timeout queue`.
        assert!(backend_queue(&freed, Duration::from_millis(200), &qcur, &qmax, take).await.is_err());
        drop(a);
    }
}
