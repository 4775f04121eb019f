//! The group-commit queue of one namespace: callers queue batches, and the
//! caller that finds nobody draining becomes the drainer, which hands
//! every queued batch to the work in groups, in queue order, and answers
//! each batch with what the work made of it.
//!
//! Every queued batch is answered exactly once, in queue order, whatever
//! the work does: a group the work fails to answer whole (a panic, or too
//! few answers) gets the failure answer for every batch it left
//! unanswered, and the queue is left free for the next drainer even if the
//! drainer itself unwinds.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};

use tokio::sync::oneshot;

/// Where a queued batch's answer goes: a thread or a task waits for it.
pub enum Reply<A> {
    /// A thread blocked on a channel.
    Blocking(mpsc::Sender<A>),
    /// A task awaiting a oneshot.
    Async(oneshot::Sender<A>),
}

impl<A> Reply<A> {
    /// Every caller waits for its answer until it gets it, unless it went
    /// away (a cancelled call), so a failed send needs no handling.
    fn send(self, answer: A) {
        let _ = match self {
            Self::Blocking(tx) => tx.send(answer).map_err(drop),
            Self::Async(tx) => tx.send(answer).map_err(drop),
        };
    }
}

struct Pending<B, A> {
    batches: VecDeque<(B, Reply<A>)>,
    /// Somebody is draining `batches`.
    draining: bool,
}

/// Batches waiting for their namespace's engine.
pub struct Queue<B, A> {
    pending: Mutex<Pending<B, A>>,
}

impl<B, A> Default for Queue<B, A> {
    fn default() -> Self {
        Self { pending: Mutex::new(Pending { batches: VecDeque::new(), draining: false }) }
    }
}

/// Clears the draining flag when the drainer stops, however it stops; if
/// it unwinds, the batches still queued are dropped, so that their callers
/// learn at once that no answer will come.
struct Draining<'q, B, A> {
    queue: &'q Queue<B, A>,
}

impl<B, A> Drop for Draining<'_, B, A> {
    fn drop(&mut self) {
        let mut pending = self.queue.lock();
        pending.draining = false;
        if std::thread::panicking() {
            pending.batches.clear();
        }
    }
}

impl<B, A> Queue<B, A> {
    /// The queue's state. Its lock is never held while the work runs, and
    /// nothing done under it can leave it half changed, so a poisoned lock
    /// is taken over as it is.
    fn lock(&self) -> MutexGuard<'_, Pending<B, A>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a batch; true if the caller must now [`Queue::drain`] it.
    pub fn push(&self, batch: B, reply: Reply<A>) -> bool {
        let mut pending = self.lock();
        pending.batches.push_back((batch, reply));
        !std::mem::replace(&mut pending.draining, true)
    }

    /// Takes the queued batches a group at a time and answers each with
    /// what `work` returns for it (one answer per batch, in order) until
    /// the queue is empty. A batch that `work` leaves unanswered, because
    /// it panicked or returned too few answers, gets `failed()`.
    pub fn drain(&self, mut work: impl FnMut(Vec<B>) -> Vec<A>, failed: impl Fn() -> A) {
        let _draining = Draining { queue: self };
        loop {
            let group: Vec<(B, Reply<A>)> = {
                let mut pending = self.lock();
                if pending.batches.is_empty() {
                    return;
                }
                pending.batches.drain(..).collect()
            };
            let (batches, replies): (Vec<B>, Vec<Reply<A>>) = group.into_iter().unzip();
            let answers = catch_unwind(AssertUnwindSafe(|| work(batches))).unwrap_or_default();
            let mut answers = answers.into_iter();
            for reply in replies {
                reply.send(answers.next().unwrap_or_else(&failed));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn submit(queue: &Queue<u32, Result<u32, String>>, batch: u32) -> (bool, mpsc::Receiver<Result<u32, String>>) {
        let (tx, rx) = mpsc::channel();
        (queue.push(batch, Reply::Blocking(tx)), rx)
    }

    #[test]
    fn the_first_caller_drains_and_every_batch_is_answered_in_order() {
        let queue = Queue::default();
        let (first, a) = submit(&queue, 1);
        let (second, b) = submit(&queue, 2);
        assert!(first && !second, "only the first caller drains");
        let mut groups = Vec::new();
        queue.drain(
            |group| {
                groups.push(group.clone());
                group.into_iter().map(|n| Ok(n * 10)).collect()
            },
            || Err("failed".into()),
        );
        assert_eq!(groups, vec![vec![1, 2]]);
        assert_eq!((a.recv(), b.recv()), (Ok(Ok(10)), Ok(Ok(20))));
        let (again, _c) = submit(&queue, 3);
        assert!(again, "the queue is free again after a drain");
    }

    #[test]
    fn a_panicking_group_is_answered_and_the_queue_goes_on() {
        let queue = Queue::default();
        let (_, a) = submit(&queue, 1);
        let (_, b) = submit(&queue, 2);
        let mut calls = 0;
        queue.drain(
            |group| {
                calls += 1;
                if calls == 1 {
                    // A batch queued while the first group runs.
                    let (_, c) = submit(&queue, 3);
                    std::mem::forget(c);
                    panic!("the work failed");
                }
                group.into_iter().map(Ok).collect()
            },
            || Err("failed".into()),
        );
        assert_eq!(calls, 2, "the batch queued meanwhile was drained too");
        assert_eq!((a.recv(), b.recv()), (Ok(Err("failed".into())), Ok(Err("failed".into()))));
        let (again, _) = submit(&queue, 4);
        assert!(again);
    }

    #[test]
    fn too_few_answers_fail_the_rest() {
        let queue = Queue::default();
        let receivers: Vec<_> = (0..3).map(|n| submit(&queue, n).1).collect();
        queue.drain(|group| group.into_iter().take(1).map(Ok).collect(), || Err("failed".into()));
        let answers: Vec<_> = receivers.iter().map(|r| r.recv().expect("answered")).collect();
        assert_eq!(answers, vec![Ok(0), Err("failed".into()), Err("failed".into())]);
    }

    #[test]
    fn a_drainer_that_unwinds_frees_the_queue_and_drops_what_is_queued() {
        let queue = Arc::new(Queue::default());
        let (_, a) = submit(&queue, 1);
        let (_, b) = submit(&queue, 2);
        let unwinding = Arc::clone(&queue);
        let joined = std::thread::spawn(move || {
            // `failed` itself panics: the drainer unwinds past the queue.
            unwinding.drain(|_| panic!("the work failed"), || panic!("and so did its failure answer"));
        })
        .join();
        assert!(joined.is_err());
        assert!(a.recv().is_err() && b.recv().is_err(), "the waiters learn that no answer comes");
        let (again, c) = submit(&queue, 3);
        assert!(again, "the queue is free again");
        queue.drain(|group| group.into_iter().map(Ok).collect(), || Err("failed".into()));
        assert_eq!(c.recv(), Ok(Ok(3)));
    }
}
