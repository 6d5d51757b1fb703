//! [`MemoryQueue`]: the queue of local mode, in one process, with SQS's visibility
//! timeouts so a consumer that dies mid-job sees the job again.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{batches, check_receive, check_visibility, Message, Queue, QueueError};

/// In-process at-least-once queue (FIFO order among visible messages).
#[derive(Debug, Default)]
pub struct MemoryQueue {
    inner: Mutex<Inner>,
    /// Wakes waiting receivers when a message is sent or released.
    changed: Notify,
}

#[derive(Debug, Default)]
struct Inner {
    entries: Vec<Entry>,
    next_id: u64,
}

#[derive(Debug)]
struct Entry {
    id: String,
    body: String,
    visible_at: Instant,
    receive_count: u32,
}

impl Entry {
    /// Each delivery gets its own handle, so an older delivery cannot delete a newer one.
    fn receipt(&self) -> String {
        format!("{}#{}", self.id, self.receive_count)
    }
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages not yet deleted, in flight or not.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().entries.len()
    }

    /// Messages ever sent; deleting one does not lower it (a progress bar's total).
    pub fn sent(&self) -> u64 {
        self.inner.lock().unwrap().next_id
    }

    /// True when every message has been deleted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bodies of all messages not yet deleted, in send order (for inspection and tests).
    pub fn bodies(&self) -> Vec<String> {
        let inner = self.inner.lock().unwrap();
        inner.entries.iter().map(|e| e.body.clone()).collect()
    }

    fn entry_mut<'a>(inner: &'a mut Inner, receipt: &str) -> Result<&'a mut Entry, QueueError> {
        let invalid = |reason: &str| QueueError::InvalidReceipt {
            receipt: receipt.to_string(),
            reason: reason.to_string(),
        };
        let (id, _) = receipt
            .split_once('#')
            .ok_or_else(|| invalid("not a receipt of this queue"))?;
        let entry = inner
            .entries
            .iter_mut()
            .find(|e| e.id == id)
            .ok_or_else(|| invalid("message already deleted"))?;
        if entry.receipt() != receipt {
            return Err(invalid("the message was received again since"));
        }
        Ok(entry)
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError> {
        batches(bodies)?;
        let mut inner = self.inner.lock().unwrap();
        let now = Instant::now();
        for body in bodies {
            inner.next_id += 1;
            let id = format!("m{}", inner.next_id);
            inner.entries.push(Entry {
                id,
                body: body.clone(),
                visible_at: now,
                receive_count: 0,
            });
        }
        drop(inner);
        self.changed.notify_waiters();
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        check_receive(max, wait, visibility)?;
        let deadline = Instant::now() + wait;
        loop {
            // Register for wake-ups before looking, so a send in between is not missed.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let next_visible = {
                let mut inner = self.inner.lock().unwrap();
                let now = Instant::now();
                let mut out = Vec::new();
                for entry in inner.entries.iter_mut() {
                    if out.len() == max {
                        break;
                    }
                    if entry.visible_at <= now {
                        entry.receive_count += 1;
                        entry.visible_at = now + visibility;
                        out.push(Message {
                            id: entry.id.clone(),
                            receipt: entry.receipt(),
                            body: entry.body.clone(),
                            receive_count: entry.receive_count,
                        });
                    }
                }
                if !out.is_empty() {
                    return Ok(out);
                }
                inner.entries.iter().map(|e| e.visible_at).min()
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = next_visible.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn change_visibility(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        check_visibility(visibility)?;
        let mut inner = self.inner.lock().unwrap();
        let entry = Self::entry_mut(&mut inner, receipt)?;
        entry.visible_at = Instant::now() + visibility;
        drop(inner);
        self.changed.notify_waiters();
        Ok(())
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let mut inner = self.inner.lock().unwrap();
        let id = Self::entry_mut(&mut inner, receipt)?.id.clone();
        inner.entries.retain(|e| e.id != id);
        Ok(())
    }
}
