//! The per-socket queue of send orders, from the scheduler to one socket.
//!
//! Why not `tokio::sync::mpsc`: a bounded tokio channel allocates its
//! first 32-slot block of orders (~1.6 KB) and its shared state when it is
//! made, so every socket paid ~2 KB for a queue that holds an order or two
//! a minute at churn-1k. This one is a `VecDeque` that allocates on the
//! first order and a `Notify`: ~100 bytes per socket until it is used.
//! Same contract as the channel it replaces: `try_send` never waits and
//! hands the order back when the queue is full or closed; the queue
//! closes when the sender is dropped, and `recv` then drains what is left
//! before answering `None`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::SendOrder;

struct Shared {
    state: Mutex<State>,
    /// `notify_one` keeps a permit when no one waits, so an order pushed
    /// between the receiver's check and its wait is not missed.
    ready: Notify,
}

struct State {
    orders: VecDeque<SendOrder>,
    capacity: usize,
    closed: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock still holds a valid queue.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The scheduler's end; dropping it closes the queue.
pub struct OrderSender {
    shared: Arc<Shared>,
}

/// The socket's end.
pub struct OrderReceiver {
    shared: Arc<Shared>,
}

/// A queue holding at most `capacity` orders.
pub fn order_queue(capacity: usize) -> (OrderSender, OrderReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            orders: VecDeque::new(),
            capacity,
            closed: false,
        }),
        ready: Notify::new(),
    });
    (
        OrderSender {
            shared: shared.clone(),
        },
        OrderReceiver { shared },
    )
}

impl OrderSender {
    /// Queues `order`, or hands it back when the queue is full or its
    /// receiver is gone.
    pub fn try_send(&self, order: SendOrder) -> Result<(), SendOrder> {
        {
            let mut state = self.shared.state();
            let receiver_gone = Arc::strong_count(&self.shared) < 2;
            if receiver_gone || state.orders.len() >= state.capacity {
                return Err(order);
            }
            state.orders.push_back(order);
        }
        self.shared.ready.notify_one();
        Ok(())
    }
}

impl Drop for OrderSender {
    fn drop(&mut self) {
        self.shared.state().closed = true;
        self.shared.ready.notify_one();
    }
}

impl OrderReceiver {
    /// The next order; `None` once the sender is gone and the queue is
    /// empty. Cancel safe: an order is taken only when it is returned.
    pub async fn recv(&mut self) -> Option<SendOrder> {
        loop {
            {
                let mut state = self.shared.state();
                if let Some(order) = state.orders.pop_front() {
                    return Some(order);
                }
                if state.closed {
                    return None;
                }
            }
            self.shared.ready.notified().await;
        }
    }

    /// Every order queued now, without waiting (at most the capacity).
    pub fn take_queued(&mut self) -> VecDeque<SendOrder> {
        std::mem::take(&mut self.shared.state().orders)
    }

    /// The sender is gone and nothing is left to take: `recv` would
    /// answer `None` at once.
    pub fn is_finished(&self) -> bool {
        let state = self.shared.state();
        state.closed && state.orders.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn order(n: u128) -> SendOrder {
        SendOrder {
            client_msg_id: Uuid::from_u128(n),
            body: format!("body {n}"),
            due_us: n as u64,
        }
    }

    #[tokio::test]
    async fn orders_arrive_in_order_then_none_after_the_sender_is_dropped() {
        let (tx, mut rx) = order_queue(4);
        for n in 0..3 {
            assert!(tx.try_send(order(n)).is_ok());
        }
        drop(tx);
        assert!(!rx.is_finished(), "orders are still queued");
        for n in 0..3 {
            assert_eq!(rx.recv().await.map(|o| o.due_us), Some(n as u64));
        }
        assert!(rx.is_finished());
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_full_queue_hands_the_order_back() {
        let (tx, mut rx) = order_queue(2);
        assert!(tx.try_send(order(1)).is_ok());
        assert!(tx.try_send(order(2)).is_ok());
        let back = tx.try_send(order(3)).expect_err("the queue is full");
        assert_eq!(back.due_us, 3);
        assert_eq!(rx.recv().await.map(|o| o.due_us), Some(1));
        assert!(tx.try_send(order(4)).is_ok(), "room again after a recv");
    }

    #[tokio::test]
    async fn take_queued_takes_every_queued_order_in_order_and_leaves_room() {
        let (tx, mut rx) = order_queue(3);
        assert!(rx.take_queued().is_empty());
        for n in 0..3 {
            assert!(tx.try_send(order(n)).is_ok());
        }
        let taken: Vec<u64> = rx.take_queued().into_iter().map(|o| o.due_us).collect();
        assert_eq!(taken, vec![0, 1, 2]);
        assert!(rx.take_queued().is_empty());
        assert!(tx.try_send(order(9)).is_ok(), "room again after taking");
        assert_eq!(rx.recv().await.map(|o| o.due_us), Some(9));
    }

    #[tokio::test]
    async fn a_gone_receiver_refuses_orders() {
        let (tx, rx) = order_queue(2);
        drop(rx);
        assert!(tx.try_send(order(1)).is_err());
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_an_order_and_for_the_close() {
        let (tx, mut rx) = order_queue(2);
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await.map(|o| o.due_us);
            let second = rx.recv().await.map(|o| o.due_us);
            (first, second)
        });
        tokio::task::yield_now().await;
        assert!(tx.try_send(order(7)).is_ok());
        tokio::task::yield_now().await;
        drop(tx);
        let (first, second) = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the receiver woke")
            .expect("the receiver did not panic");
        assert_eq!(first, Some(7));
        assert_eq!(second, None);
    }

    #[tokio::test]
    async fn a_receiver_moved_to_another_task_is_woken_there() {
        let (tx, mut rx) = order_queue(2);
        // Waits once in this task (its waker is kept), then gives up.
        let cancelled = tokio::time::timeout(std::time::Duration::from_millis(10), rx.recv()).await;
        assert!(cancelled.is_err());
        // The same receiver now waits in another task: the order must wake
        // that task, not the first one's stale waker.
        let waiter = tokio::spawn(async move { rx.recv().await.map(|o| o.due_us) });
        tokio::task::yield_now().await;
        assert!(tx.try_send(order(8)).is_ok());
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the receiver's new task woke")
            .expect("the receiver did not panic");
        assert_eq!(got, Some(8));
    }

    #[tokio::test]
    async fn a_cancelled_recv_loses_no_order() {
        let (tx, mut rx) = order_queue(2);
        // Polled once and dropped while waiting, as `select!` does.
        let cancelled = tokio::time::timeout(std::time::Duration::from_millis(10), rx.recv()).await;
        assert!(cancelled.is_err());
        assert!(tx.try_send(order(5)).is_ok());
        assert_eq!(rx.recv().await.map(|o| o.due_us), Some(5));
    }
}
