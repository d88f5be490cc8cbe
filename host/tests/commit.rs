//! The guarded commit, driven directly through the broker against a real redis-server.

use sluice::broker::Ack;
use sluice::message::{CommitStatus, Output};
use sluice_testkit::*;

fn payment(n: &str) -> Output {
    Output {
        stream: "PAYMENTS".into(),
        fields: vec![("n".into(), n.as_bytes().to_vec())],
        raw_names: None,
    }
}

/// Committing the same processed entry twice (as after a lost EXEC reply) writes its
/// outputs once; the second commit reports the entry as gone (pending for nobody).
#[tokio::test]
async fn repeated_commit_writes_once() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let broker = broker(&redis).await;
    let mut a = broker.consumer("IN", "G", "a");
    a.ensure_group().await.expect("group");
    add(&mut con, "IN", &[("n", "1")]).await;
    let read = a
        .read_new(10, std::time::Duration::from_millis(100))
        .await
        .expect("read");
    assert_eq!(read.len(), 1);
    let acks = [Ack {
        id: read[0].id.clone(),
        outputs: vec![payment("1"), payment("1b")],
        state: Default::default(),
    }];
    assert_eq!(
        a.commit(&acks, false).await.expect("commit"),
        [CommitStatus::Committed]
    );
    assert_eq!(
        a.commit(&acks, false).await.expect("commit again"),
        [CommitStatus::Gone]
    );
    assert_eq!(
        len(&mut con, "PAYMENTS").await,
        2,
        "two outputs, written once"
    );
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
}

/// An entry another consumer has claimed in the meantime writes nothing when its former
/// owner commits; the new owner's commit goes through. Entries of one batch are judged
/// one by one.
#[tokio::test]
async fn commit_of_a_claimed_entry_writes_nothing() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let broker = broker(&redis).await;
    let mut a = broker.consumer("IN", "G", "a");
    let mut b = broker.consumer("IN", "G", "b");
    a.ensure_group().await.expect("group");
    add(&mut con, "IN", &[("n", "1")]).await;
    add(&mut con, "IN", &[("n", "2")]).await;
    let read = a
        .read_new(10, std::time::Duration::from_millis(100))
        .await
        .expect("read");
    assert_eq!(read.len(), 2);
    // b takes the first entry over, as it would from a consumer it believes dead.
    let (stolen, _) = b
        .idle_pending(std::time::Duration::ZERO, "-", 10)
        .await
        .expect("pending of b");
    assert!(stolen.is_empty(), "b owns nothing yet");
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg("IN")
        .arg("G")
        .arg("b")
        .arg(0)
        .arg(&read[0].id)
        .query_async(&mut con)
        .await
        .expect("XCLAIM");
    let acks: Vec<Ack> = read
        .iter()
        .map(|e| Ack {
            id: e.id.clone(),
            outputs: vec![payment(&e.id)],
            state: Default::default(),
        })
        .collect();
    assert_eq!(
        a.commit(&acks, false).await.expect("commit"),
        [CommitStatus::NotOwned, CommitStatus::Committed]
    );
    let written = entries(&mut con, "PAYMENTS").await;
    assert_eq!(written.len(), 1);
    assert_eq!(field(&written[0].1, "n"), Some(read[1].id.as_str()));
    assert_eq!(
        b.commit(&acks[..1], false).await.expect("commit by b"),
        [CommitStatus::Committed]
    );
    assert_eq!(len(&mut con, "PAYMENTS").await, 2);
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
}

/// A target key of the wrong type fails the whole batch before anything is written:
/// no half-committed batch.
#[tokio::test]
async fn wrongly_typed_target_fails_the_batch_whole() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let broker = broker(&redis).await;
    let mut a = broker.consumer("IN", "G", "a");
    a.ensure_group().await.expect("group");
    let _: () = redis::cmd("SET")
        .arg("NOT_A_STREAM")
        .arg("x")
        .query_async(&mut con)
        .await
        .expect("SET");
    add(&mut con, "IN", &[("n", "1")]).await;
    add(&mut con, "IN", &[("n", "2")]).await;
    let read = a
        .read_new(10, std::time::Duration::from_millis(100))
        .await
        .expect("read");
    let acks = [
        Ack {
            id: read[0].id.clone(),
            outputs: vec![payment("1")],
            state: Default::default(),
        },
        Ack {
            id: read[1].id.clone(),
            outputs: vec![Output {
                stream: "NOT_A_STREAM".into(),
                fields: vec![("n".into(), b"2".to_vec())],
                raw_names: None,
            }],
            state: Default::default(),
        },
    ];
    let error = a.commit(&acks, false).await.expect_err("commit fails");
    assert!(format!("{error:#}").contains("NOT_A_STREAM"), "{error:#}");
    assert_eq!(len(&mut con, "PAYMENTS").await, 0, "nothing written");
    assert_eq!(
        pending(&mut con, "IN", "G").await,
        2,
        "nothing acknowledged"
    );
}

/// Ownership is judged per entry however the batch's ID range is crowded: a small batch
/// whose range holds many other pending entries of ours (failed ones waiting for a retry),
/// with one entry claimed away and one already committed among them, writes exactly the
/// entries it still owns.
#[tokio::test]
async fn ownership_holds_in_a_crowded_range() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let broker = broker(&redis).await;
    let mut a = broker.consumer("IN", "G", "a");
    a.ensure_group().await.expect("group");
    for n in 0..80 {
        add(&mut con, "IN", &[("n", &n.to_string())]).await;
    }
    let read = a
        .read_new(80, std::time::Duration::from_millis(100))
        .await
        .expect("read");
    assert_eq!(read.len(), 80);
    let ack = |i: usize| Ack {
        id: read[i].id.clone(),
        outputs: vec![payment(&i.to_string())],
        state: Default::default(),
    };
    // Entry 40 is committed first; entry 70 is claimed by b.
    assert_eq!(
        a.commit(&[ack(40)], false).await.expect("commit 40"),
        [CommitStatus::Committed]
    );
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg("IN")
        .arg("G")
        .arg("b")
        .arg(0)
        .arg(&read[70].id)
        .query_async(&mut con)
        .await
        .expect("XCLAIM");
    // A batch of 5 spanning the whole range (78 other pending entries of ours in it: more
    // than one ownership page holds).
    let statuses = a
        .commit(&[ack(0), ack(40), ack(41), ack(70), ack(79)], false)
        .await
        .expect("commit");
    assert_eq!(
        statuses,
        [
            CommitStatus::Committed,
            CommitStatus::Gone,
            CommitStatus::Committed,
            CommitStatus::NotOwned,
            CommitStatus::Committed
        ]
    );
    // The rest in one big batch, listed out of order.
    let rest: Vec<Ack> = (1..80)
        .rev()
        .filter(|i| ![40, 41, 70, 79].contains(i))
        .map(ack)
        .collect();
    let statuses = a.commit(&rest, false).await.expect("commit the rest");
    assert!(statuses.iter().all(|s| *s == CommitStatus::Committed));
    let written: Vec<String> = entries(&mut con, "PAYMENTS")
        .await
        .iter()
        .map(|(_, fields)| field(fields, "n").expect("n").to_owned())
        .collect();
    assert_eq!(written.len(), 79, "every entry but the claimed one, once");
    let unique: std::collections::HashSet<&String> = written.iter().collect();
    assert_eq!(unique.len(), 79);
    assert!(!written.contains(&"70".to_owned()));
    assert_eq!(pending(&mut con, "IN", "G").await, 1, "b still holds 70");
}

/// An entry removed from the pending entries list under its owner (`XGROUP DELCONSUMER`)
/// is pending for nobody: a commit allowed to adopt writes its outputs; one that may not
/// (an earlier try of it may have gone through) writes nothing.
#[tokio::test]
async fn entries_pending_for_nobody_are_adopted_only_when_allowed() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let broker = broker(&redis).await;
    let mut a = broker.consumer("IN", "G", "a");
    a.ensure_group().await.expect("group");
    add(&mut con, "IN", &[("n", "1")]).await;
    add(&mut con, "IN", &[("n", "2")]).await;
    let read = a
        .read_new(10, std::time::Duration::from_millis(100))
        .await
        .expect("read");
    let _: i64 = redis::cmd("XGROUP")
        .arg("DELCONSUMER")
        .arg("IN")
        .arg("G")
        .arg("a")
        .query_async(&mut con)
        .await
        .expect("DELCONSUMER");
    let acks: Vec<Ack> = read
        .iter()
        .map(|e| Ack {
            id: e.id.clone(),
            outputs: vec![payment(&e.id)],
            state: Default::default(),
        })
        .collect();
    assert_eq!(
        a.commit(&acks[..1], false)
            .await
            .expect("commit without adopting"),
        [CommitStatus::Gone]
    );
    assert_eq!(
        len(&mut con, "PAYMENTS").await,
        0,
        "nothing written without adopting"
    );
    assert_eq!(
        a.commit(&acks, true).await.expect("commit adopting"),
        [CommitStatus::Adopted, CommitStatus::Adopted]
    );
    assert_eq!(len(&mut con, "PAYMENTS").await, 2);
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
}

/// After a failover, the new primary may not know that an entry was ever delivered (the
/// old primary crashed before replicating the read): it is pending for nobody and past
/// the group's last-delivered ID. Adopting it would write its outputs, and then the
/// group delivers it again: a duplicate. It is reported undelivered, nothing is written,
/// and the delivery that comes again commits it once.
#[tokio::test]
async fn an_entry_whose_delivery_was_lost_is_not_adopted() {
    let TestContext { redis, mut con } = TestContext::new().await;
    let broker = broker(&redis).await;
    let mut a = broker.consumer("IN", "G", "a");
    a.ensure_group().await.expect("group");
    add(&mut con, "IN", &[("n", "1")]).await;
    let read = a
        .read_new(10, std::time::Duration::from_millis(100))
        .await
        .expect("read");
    assert_eq!(read.len(), 1);
    // What a replica promoted before the read reached it holds: no pending entry, and
    // the group's last-delivered ID before the entry.
    let () = redis::pipe()
        .cmd("XACK")
        .arg(&["IN", "G", &read[0].id])
        .ignore()
        .cmd("XGROUP")
        .arg(&["SETID", "IN", "G", "0"])
        .ignore()
        .query_async(&mut con)
        .await
        .expect("lose the delivery");
    let acks = [Ack {
        id: read[0].id.clone(),
        outputs: vec![payment("1")],
        state: Default::default(),
    }];
    assert_eq!(
        a.commit(&acks, true).await.expect("commit"),
        [CommitStatus::Undelivered]
    );
    assert_eq!(len(&mut con, "PAYMENTS").await, 0, "nothing written");
    let again = a
        .read_new(10, std::time::Duration::from_millis(100))
        .await
        .expect("read again");
    assert_eq!(again.len(), 1, "the entry is delivered again");
    assert_eq!(
        a.commit(&acks, true).await.expect("commit"),
        [CommitStatus::Committed]
    );
    assert_eq!(len(&mut con, "PAYMENTS").await, 1, "written once");
    assert_eq!(pending(&mut con, "IN", "G").await, 0);
}
