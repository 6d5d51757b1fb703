//! MemoryQueue against the Queue contract (SqsQueue is only exercised, not run through
//! these checks, in functions/tiler/tests/e2e_lambda.rs against moto: send, receive).

use std::sync::Arc;
use std::time::Duration;

use sphinx_core::queue::{MemoryQueue, Queue, QueueError};

const NO_WAIT: Duration = Duration::ZERO;

#[tokio::test]
async fn messages_are_redelivered_until_deleted() {
    let q = MemoryQueue::new();
    let bodies: Vec<String> = (0..13).map(|i| format!("job {i}")).collect();
    q.send_batch(&bodies).await.unwrap();
    assert_eq!(q.len(), 13);

    let first = q
        .receive(10, NO_WAIT, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!(first[0].body, "job 0");
    assert!(first.iter().all(|m| m.receive_count == 1));
    let rest = q
        .receive(10, NO_WAIT, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(rest.len(), 3, "in-flight messages are invisible");

    for m in &first {
        q.delete(&m.receipt).await.unwrap();
    }
    // The 3 undeleted ones come back after their visibility timeout.
    let again = q
        .receive(10, Duration::from_secs(2), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|m| m.receive_count == 2));
    // The previous delivery's receipt no longer controls the message.
    let stale = q.delete(&rest[0].receipt).await.unwrap_err();
    assert!(
        matches!(stale, QueueError::InvalidReceipt { .. }),
        "{stale}"
    );
    for m in &again {
        q.delete(&m.receipt).await.unwrap();
    }
    assert!(q.is_empty());
    // Redeliveries and deletions leave the count of messages sent alone.
    assert_eq!(q.sent(), 13);
}

#[tokio::test]
async fn visibility_can_be_extended_or_released() {
    let q = MemoryQueue::new();
    q.send_batch(&["a".to_string()]).await.unwrap();
    let m = q
        .receive(1, NO_WAIT, Duration::from_millis(100))
        .await
        .unwrap()
        .remove(0);
    q.change_visibility(&m.receipt, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(q
        .receive(1, Duration::from_millis(300), Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    q.change_visibility(&m.receipt, Duration::ZERO)
        .await
        .unwrap();
    let back = q.receive(1, NO_WAIT, Duration::from_secs(1)).await.unwrap();
    assert_eq!((back.len(), back[0].receive_count), (1, 2));
}

#[tokio::test]
async fn a_waiting_receiver_wakes_on_send() {
    let q = Arc::new(MemoryQueue::new());
    let receiver = {
        let q = q.clone();
        tokio::spawn(async move {
            q.receive(10, Duration::from_secs(10), Duration::from_secs(30))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = std::time::Instant::now();
    q.send_batch(&["wake".to_string()]).await.unwrap();
    let got = receiver.await.unwrap().unwrap();
    assert_eq!(got[0].body, "wake");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "woke on send, not on timeout"
    );
}

#[tokio::test]
async fn limits_are_checked() {
    let q = MemoryQueue::new();
    assert!(matches!(
        q.receive(0, NO_WAIT, NO_WAIT).await,
        Err(QueueError::Invalid { .. })
    ));
    assert!(matches!(
        q.receive(11, NO_WAIT, NO_WAIT).await,
        Err(QueueError::Invalid { .. })
    ));
    assert!(matches!(
        q.receive(1, Duration::from_secs(21), NO_WAIT).await,
        Err(QueueError::Invalid { .. })
    ));
    let huge = vec!["x".repeat(300 * 1024)];
    assert!(matches!(
        q.send_batch(&huge).await,
        Err(QueueError::Invalid { .. })
    ));
    assert!(q.is_empty());
    assert!(matches!(
        q.delete("nonsense").await,
        Err(QueueError::InvalidReceipt { .. })
    ));
}
