//! The world's command queue to one host's driver: single-threaded,
//! bounded, and allocated on first use (a tokio channel allocates a block
//! of 32 commands when it is created, for each of 100,000 hosts).
//!
//! It behaves as a tokio `mpsc` channel does for the driver, wake for
//! wake: a send, or dropping the sender, wakes the receiving task if it
//! is waiting; `try_send` fails when the queue is full or the receiver is
//! gone. madsim's scheduler draws from the seed for every wake, so the
//! same wakes keep reports the same.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use grove_node::driver::{Command, Commands};

/// Commands queued and not yet taken before `try_send` refuses more.
pub const CAPACITY: usize = 64;

#[derive(Default)]
struct Queue {
    items: VecDeque<Command>,
    waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

impl Queue {
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// The world's end.
pub struct Sender(Rc<RefCell<Queue>>);

/// The driver's end.
pub struct Receiver(Rc<RefCell<Queue>>);

/// A connected sender and receiver.
pub fn channel() -> (Sender, Receiver) {
    let q = Rc::new(RefCell::new(Queue::default()));
    (Sender(q.clone()), Receiver(q))
}

impl Sender {
    /// Queue `command`, or hand it back if the queue is full or the driver
    /// has stopped.
    pub fn try_send(&self, command: Command) -> Result<(), Command> {
        let mut q = self.0.borrow_mut();
        if q.receiver_gone || q.items.len() >= CAPACITY {
            return Err(command);
        }
        q.items.push_back(command);
        q.wake();
        Ok(())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut q = self.0.borrow_mut();
        q.sender_gone = true;
        q.wake();
    }
}

impl Commands for Receiver {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Command>> {
        let mut q = self.0.borrow_mut();
        if let Some(c) = q.items.pop_front() {
            return Poll::Ready(Some(c));
        }
        if q.sender_gone {
            return Poll::Ready(None);
        }
        match &mut q.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.0.borrow_mut().receiver_gone = true;
    }
}
