//! The embedded bus backend: a SQLite file in the state directory.
//!
//! The default, so `bazaar up` needs no server. Messages are rows in one
//! table (`seq` orders them per channel). Each subscription keeps the
//! sequence number up to which it has settled everything (`acked_seq`), and
//! a row per message handed out above it (`bus_deliveries`): its attempts,
//! and whether it was settled while an older one was still open (a
//! subscriber with more than one in flight). So a message handed out
//! before a crash is handed out again after restart, with its attempts
//! remembered, and one settled out of order is not. This run's hand-out
//! position is kept in memory; it starts at `acked_seq` on each subscribe.
//!
//! A publish (and a dead letter or its replay) commits with `synchronous =
//! FULL`: once it returned, the message survives even an OS crash.
//! Publishes that arrive while a commit is running go together in the next
//! one (group commit, see [`EmbeddedBus::publish`]): one sync for all of
//! them. A subscription's bookkeeping (the message handed out, the ack)
//! commits without waiting for the disk (see [`relaxed`]). Messages every
//! subscription of their channel has acknowledged are deleted.
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, oneshot};

use super::{BusBackend, DeadLetter, Delivery, Subscription, now_ms};

/// The file in the state directory.
pub const FILE_NAME: &str = "message_bus.db";

/// Compact acknowledged messages after this many acks.
const COMPACT_EVERY: u64 = 256;

pub struct EmbeddedBus {
    db: Arc<Mutex<Connection>>,
    /// Publishes waiting for the commit that stores them.
    outgoing: Arc<Mutex<Vec<Outgoing>>>,
    /// Commits of publishes so far (a test counts them).
    #[cfg(test)]
    publish_commits: Arc<AtomicU64>,
    /// Wakes subscribers waiting in `next` when something is published.
    published: Notify,
    acks: AtomicU64,
    /// The last message handed to each subscription since it subscribed.
    handed_out: Mutex<HashMap<Subscription, i64>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bus_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    payload BLOB NOT NULL,
    -- NULL: every subscriber of the channel; else only this one (a replay)
    target TEXT,
    published_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS bus_messages_by_channel ON bus_messages (channel, seq);
CREATE TABLE IF NOT EXISTS bus_subscriptions (
    channel TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    -- every message up to here is settled (or not for this subscriber)
    acked_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, subscriber)
);
-- Messages above a subscription's acked_seq that were handed out to it.
CREATE TABLE IF NOT EXISTS bus_deliveries (
    channel TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    seq INTEGER NOT NULL,
    -- times handed out (a crash between delivery and ack counts)
    attempts INTEGER NOT NULL,
    -- 1: acknowledged or dead-lettered while an older one is still open
    settled INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, subscriber, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bus_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed_ms INTEGER NOT NULL
);
";

impl EmbeddedBus {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut conn = Connection::open(path).with_context(|| format!("opening the message bus at {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA).with_context(|| format!("preparing the message bus at {}", path.display()))?;
        upgrade_inflight_slot(&mut conn).with_context(|| format!("upgrading the message bus at {}", path.display()))?;
        Ok(Self {
            db: Arc::new(Mutex::new(conn)),
            outgoing: Arc::default(),
            #[cfg(test)]
            publish_commits: Arc::default(),
            published: Notify::new(),
            acks: AtomicU64::new(0),
            handed_out: Mutex::new(HashMap::new()),
        })
    }

    fn handed_out(&self, sub: &Subscription) -> Option<i64> {
        self.handed_out.lock().ok()?.get(sub).copied()
    }

    /// Runs `f` on the connection off the async runtime.
    async fn with_db<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.lock().map_err(|_| anyhow!("message bus database lock poisoned"))?;
            f(&mut conn)
        })
        .await?
    }

    /// The oldest message for `sub` above both its `acked_seq` and
    /// `after` (this run's last hand-out), not settled yet; recorded as
    /// handed out once more. Returns its sequence number beside it.
    fn take_next(conn: &mut Connection, sub: &Subscription, after: Option<i64>) -> Result<Option<(i64, Delivery)>> {
        let tx = conn.transaction()?;
        let acked: i64 = tx
            .prepare_cached("SELECT acked_seq FROM bus_subscriptions WHERE channel = ?1 AND subscriber = ?2")?
            .query_row(params![sub.channel, sub.subscriber], |r| r.get(0))?;
        let next: Option<(i64, Vec<u8>, u32)> = tx
            .prepare_cached(
                "SELECT m.seq, m.payload, COALESCE(d.attempts, 0) FROM bus_messages m
                 LEFT JOIN bus_deliveries d ON d.channel = m.channel AND d.subscriber = ?3 AND d.seq = m.seq
                 WHERE m.channel = ?1 AND m.seq > ?2 AND (m.target IS NULL OR m.target = ?3)
                   AND COALESCE(d.settled, 0) = 0
                 ORDER BY m.seq LIMIT 1",
            )?
            .query_row(params![sub.channel, acked.max(after.unwrap_or(0)), sub.subscriber], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((seq, payload, previous_attempts)) = next else { return Ok(None) };
        tx.prepare_cached(
            "INSERT INTO bus_deliveries (channel, subscriber, seq, attempts) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT DO UPDATE SET attempts = attempts + 1",
        )?
        .execute(params![sub.channel, sub.subscriber, seq])?;
        tx.commit()?;
        Ok(Some((seq, Delivery { id: seq.to_string(), payload, previous_attempts })))
    }
}

/// A publish waiting for its commit; told the message's sequence number, or
/// why it was not stored.
struct Outgoing {
    channel: String,
    payload: Vec<u8>,
    stored: oneshot::Sender<std::result::Result<i64, String>>,
}

/// Stores every queued publish in one transaction (one sync), in the order
/// they were queued, and tells each publisher. Takes the connection first:
/// what is queued while it waits for it goes in this commit too.
fn commit_outgoing(db: &Mutex<Connection>, outgoing: &Mutex<Vec<Outgoing>>) {
    let mut conn = db.lock();
    let batch = std::mem::take(&mut *outgoing.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let stored = match conn.as_deref_mut() {
        Ok(conn) => insert_messages(conn, &batch).map_err(|e| e.to_string()),
        Err(_) => Err("message bus database lock poisoned".to_string()),
    };
    drop(conn);
    match stored {
        Ok(seqs) => batch.into_iter().zip(seqs).for_each(|(message, seq)| drop(message.stored.send(Ok(seq)))),
        Err(e) => batch.into_iter().for_each(|message| drop(message.stored.send(Err(e.clone())))),
    }
}

/// Inserts `batch` in one transaction; each message's sequence number.
fn insert_messages(conn: &mut Connection, batch: &[Outgoing]) -> rusqlite::Result<Vec<i64>> {
    let tx = conn.transaction()?;
    let mut seqs = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached("INSERT INTO bus_messages (channel, payload, published_ms) VALUES (?1, ?2, ?3)")?;
        for message in batch {
            insert.execute(params![message.channel, message.payload, now_ms() as i64])?;
            seqs.push(tx.last_insert_rowid());
        }
    }
    tx.commit()?;
    Ok(seqs)
}

/// Marks `seq` settled for `sub`, and moves its `acked_seq` up to just below
/// the oldest message still open (or to the newest handed out, if none is):
/// every message of its below that is settled, since messages are handed
/// out in order. The rows at or below it are no longer needed. (Statements
/// cached: this runs once per delivered message.)
fn settle(conn: &Connection, sub: &Subscription, seq: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO bus_deliveries (channel, subscriber, seq, attempts, settled) VALUES (?1, ?2, ?3, 0, 1)
         ON CONFLICT DO UPDATE SET settled = 1",
    )?
    .execute(params![sub.channel, sub.subscriber, seq])?;
    conn.prepare_cached(
        "UPDATE bus_subscriptions SET acked_seq = MAX(acked_seq, COALESCE(
             (SELECT MIN(seq) - 1 FROM bus_deliveries WHERE channel = ?1 AND subscriber = ?2 AND settled = 0),
             (SELECT MAX(seq) FROM bus_deliveries WHERE channel = ?1 AND subscriber = ?2)))
         WHERE channel = ?1 AND subscriber = ?2",
    )?
    .execute(params![sub.channel, sub.subscriber])?;
    conn.prepare_cached(
        "DELETE FROM bus_deliveries WHERE channel = ?1 AND subscriber = ?2
         AND seq <= (SELECT acked_seq FROM bus_subscriptions WHERE channel = ?1 AND subscriber = ?2)",
    )?
    .execute(params![sub.channel, sub.subscriber])?;
    Ok(())
}

/// Files written before `bus_deliveries` kept one message in flight per
/// subscription in two columns: move it into a row, then drop them.
fn upgrade_inflight_slot(conn: &mut Connection) -> Result<()> {
    let old: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('bus_subscriptions') WHERE name = 'inflight_seq'",
        [],
        |r| r.get(0),
    )?;
    if !old {
        return Ok(());
    }
    let tx = conn.transaction()?;
    tx.execute_batch(
        "INSERT OR IGNORE INTO bus_deliveries (channel, subscriber, seq, attempts)
           SELECT channel, subscriber, inflight_seq, inflight_attempts FROM bus_subscriptions
           WHERE inflight_seq > acked_seq;
         ALTER TABLE bus_subscriptions DROP COLUMN inflight_seq;
         ALTER TABLE bus_subscriptions DROP COLUMN inflight_attempts;",
    )?;
    tx.commit()?;
    Ok(())
}

/// Runs `f` with commits that do not wait for the disk (`synchronous =
/// NORMAL`), then syncs fully again. For a subscription's bookkeeping only:
/// a power cut may undo its last commits, which repeats a delivery (at
/// least once allows it) or forgets an attempt, and never loses or reorders
/// a message (WAL keeps commits in order, and the next publish's sync makes
/// them durable too). A crash of bazaar alone undoes nothing. Two fsyncs
/// fewer per delivered message.
fn relaxed<T>(conn: &mut Connection, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let result = f(conn);
    conn.pragma_update(None, "synchronous", "FULL")?;
    result
}

fn parse_seq(id: &str) -> Result<i64> {
    id.parse().map_err(|_| anyhow!("{id:?} is not an embedded bus message id"))
}

#[async_trait]
impl BusBackend for EmbeddedBus {
    /// Queues the message for the next commit of publishes and waits for
    /// it. The first publish into an empty queue starts that commit on the
    /// blocking pool; it takes the connection, then every publish queued by
    /// then, so those that arrive while another commit syncs go together in
    /// the next. The outbox relays of concurrent checkouts each publish
    /// their own events: one sync per message held the bus to about 400
    /// messages a second on these machines, and the relays queued behind it.
    async fn publish(&self, channel: &str, payload: &[u8]) -> Result<String> {
        let (stored, seq) = oneshot::channel();
        let first = {
            let mut outgoing = self.outgoing.lock().map_err(|_| anyhow!("message bus queue lock poisoned"))?;
            outgoing.push(Outgoing { channel: channel.to_string(), payload: payload.to_vec(), stored });
            outgoing.len() == 1
        };
        if first {
            let (db, outgoing) = (self.db.clone(), self.outgoing.clone());
            #[cfg(test)]
            let commits = self.publish_commits.clone();
            // Not awaited: the commit stores every message queued with this
            // one even if this caller goes away meanwhile.
            tokio::task::spawn_blocking(move || {
                commit_outgoing(&db, &outgoing);
                #[cfg(test)]
                commits.fetch_add(1, Ordering::Relaxed);
            });
        }
        let seq = seq.await.map_err(|_| anyhow!("the message bus stopped before storing the message"))?;
        let seq = seq.map_err(|e| anyhow!("storing the message on the bus: {e}"))?;
        self.published.notify_waiters();
        Ok(seq.to_string())
    }

    async fn subscribe(&self, sub: &Subscription) -> Result<()> {
        if let Ok(mut handed_out) = self.handed_out.lock() {
            handed_out.remove(sub);
        }
        let sub = sub.clone();
        self.with_db(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO bus_subscriptions (channel, subscriber) VALUES (?1, ?2)",
                params![sub.channel, sub.subscriber],
            )?;
            Ok(())
        })
        .await
    }

    async fn next(&self, sub: &Subscription, wait: Duration) -> Result<Option<Delivery>> {
        let deadline = Instant::now() + wait;
        loop {
            // Register interest before looking, so a publish in between
            // still wakes us.
            let notified = self.published.notified();
            let (sub_owned, after) = (sub.clone(), self.handed_out(sub));
            let taken = self.with_db(move |conn| relaxed(conn, |conn| Self::take_next(conn, &sub_owned, after))).await?;
            if let Some((seq, delivery)) = taken {
                if let Ok(mut handed_out) = self.handed_out.lock() {
                    handed_out.insert(sub.clone(), seq);
                }
                return Ok(Some(delivery));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn ack(&self, sub: &Subscription, id: &str) -> Result<()> {
        let seq = parse_seq(id)?;
        let sub = sub.clone();
        let compact = self.acks.fetch_add(1, Ordering::Relaxed) % COMPACT_EVERY == COMPACT_EVERY - 1;
        self.with_db(move |conn| {
            relaxed(conn, |conn| {
                let tx = conn.transaction()?;
                settle(&tx, &sub, seq)?;
                tx.commit()?;
                if compact {
                    conn.execute(
                        "DELETE FROM bus_messages WHERE channel = ?1
                         AND seq <= (SELECT MIN(acked_seq) FROM bus_subscriptions WHERE channel = ?1)",
                        params![sub.channel],
                    )?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn dead_letter(&self, sub: &Subscription, delivery: &Delivery, attempts: u32, error: &str) -> Result<()> {
        let seq = parse_seq(&delivery.id)?;
        let (sub, payload, error) = (sub.clone(), delivery.payload.clone(), error.to_string());
        self.with_db(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO bus_dead_letters (channel, subscriber, seq, payload, attempts, error, failed_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![sub.channel, sub.subscriber, seq, payload, attempts, error, now_ms() as i64],
            )?;
            settle(&tx, &sub, seq)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        self.with_db(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, channel, subscriber, payload, attempts, error, failed_ms FROM bus_dead_letters ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(DeadLetter {
                    id: r.get::<_, i64>(0)?.to_string(),
                    channel: r.get(1)?,
                    subscriber: r.get(2)?,
                    payload: r.get(3)?,
                    attempts: r.get(4)?,
                    error: r.get(5)?,
                    failed_at_ms: r.get::<_, i64>(6)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn replay(&self, id: &str) -> Result<()> {
        let dead_id: i64 = id.parse().map_err(|_| anyhow!("{id:?} is not a dead letter id"))?;
        self.with_db(move |conn| {
            let tx = conn.transaction()?;
            let (channel, subscriber, payload): (String, String, Vec<u8>) = tx
                .query_row(
                    "SELECT channel, subscriber, payload FROM bus_dead_letters WHERE id = ?1",
                    [dead_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?
                .ok_or_else(|| anyhow!("there is no dead letter {dead_id}; `bazaar bus dead-letters` lists them"))?;
            tx.execute(
                "INSERT INTO bus_messages (channel, payload, target, published_ms) VALUES (?1, ?2, ?3, ?4)",
                params![channel, payload, subscriber, now_ms() as i64],
            )?;
            tx.execute("DELETE FROM bus_dead_letters WHERE id = ?1", [dead_id])?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        self.published.notify_waiters();
        Ok(())
    }

    async fn lag(&self, sub: &Subscription) -> Result<u64> {
        let sub = sub.clone();
        self.with_db(move |conn| {
            let n: i64 = conn.query_row(
                "SELECT COUNT(*) FROM bus_messages m JOIN bus_subscriptions s
                   ON s.channel = m.channel AND s.subscriber = ?2
                 WHERE m.channel = ?1 AND m.seq > s.acked_seq AND (m.target IS NULL OR m.target = ?2)
                   AND NOT EXISTS (SELECT 1 FROM bus_deliveries d
                     WHERE d.channel = m.channel AND d.subscriber = ?2 AND d.seq = m.seq AND d.settled = 1)",
                params![sub.channel, sub.subscriber],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(channel: &str, subscriber: &str) -> Subscription {
        Subscription { channel: channel.into(), subscriber: subscriber.into() }
    }

    async fn open(dir: &Path) -> EmbeddedBus {
        EmbeddedBus::open(&dir.join(FILE_NAME)).unwrap()
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_message_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let bus = open(dir.path()).await;
        let (a, b) = (sub("orders", "mailer"), sub("orders", "audit"));
        bus.subscribe(&a).await.unwrap();
        bus.subscribe(&b).await.unwrap();
        for i in 0..5 {
            bus.publish("orders", format!("m{i}").as_bytes()).await.unwrap();
        }
        bus.publish("other", b"x").await.unwrap();
        for s in [&a, &b] {
            for i in 0..5 {
                let d = bus.next(s, Duration::ZERO).await.unwrap().unwrap();
                assert_eq!(d.payload, format!("m{i}").as_bytes());
                bus.ack(s, &d.id).await.unwrap();
            }
            assert!(bus.next(s, Duration::ZERO).await.unwrap().is_none());
        }
    }

    /// Publishes that overlap go out in shared commits (one sync for
    /// several), each stored once and in its publisher's order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_publishes_share_commits_and_keep_each_publishers_order() {
        let dir = tempfile::tempdir().unwrap();
        let bus = Arc::new(open(dir.path()).await);
        let s = sub("orders", "mailer");
        bus.subscribe(&s).await.unwrap();
        let (publishers, each) = (8, 25);
        let tasks: Vec<_> = (0..publishers)
            .map(|p| {
                let bus = bus.clone();
                tokio::spawn(async move {
                    for i in 0..each {
                        bus.publish("orders", format!("{p}:{i}").as_bytes()).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let commits = bus.publish_commits.load(Ordering::Relaxed);
        assert!(commits < publishers * each, "{commits} commits for {} publishes: none shared", publishers * each);

        let mut next_of = vec![0u64; publishers as usize];
        while let Some(d) = bus.next(&s, Duration::ZERO).await.unwrap() {
            let text = String::from_utf8(d.payload.clone()).unwrap();
            let (p, i) = text.split_once(':').unwrap();
            let (p, i): (usize, u64) = (p.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next_of[p], "publisher {p}'s messages out of order");
            next_of[p] += 1;
            bus.ack(&s, &d.id).await.unwrap();
        }
        assert_eq!(next_of, vec![each; publishers as usize], "every message stored once");
    }

    #[tokio::test]
    async fn an_unacknowledged_message_is_redelivered_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let s = sub("orders", "mailer");
        {
            let bus = open(dir.path()).await;
            bus.subscribe(&s).await.unwrap();
            bus.publish("orders", b"first").await.unwrap();
            let d = bus.next(&s, Duration::ZERO).await.unwrap().unwrap();
            assert_eq!(d.previous_attempts, 0);
            // The "crash": no ack.
        }
        let bus = open(dir.path()).await;
        bus.subscribe(&s).await.unwrap();
        let d = bus.next(&s, Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(d.payload, b"first");
        assert_eq!(d.previous_attempts, 1, "the crashed attempt counts");
        assert_eq!(bus.lag(&s).await.unwrap(), 1);
        bus.ack(&s, &d.id).await.unwrap();
        assert_eq!(bus.lag(&s).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn messages_settled_out_of_order_are_not_redelivered_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let s = sub("orders", "mailer");
        {
            let bus = open(dir.path()).await;
            bus.subscribe(&s).await.unwrap();
            for m in ["m1", "m2", "m3", "m4"] {
                bus.publish("orders", m.as_bytes()).await.unwrap();
            }
            // Three in flight at once, the later two settled first.
            let mut taken = Vec::new();
            for _ in 0..3 {
                taken.push(bus.next(&s, Duration::ZERO).await.unwrap().unwrap());
            }
            assert_eq!(taken.iter().map(|d| d.payload.as_slice()).collect::<Vec<_>>(), [b"m1", b"m2", b"m3"]);
            bus.ack(&s, &taken[2].id).await.unwrap();
            bus.dead_letter(&s, &taken[1], 5, "boom").await.unwrap();
            assert_eq!(bus.lag(&s).await.unwrap(), 2, "m1 and m4 are still to settle");
            // The "crash": m1 never settled.
        }
        let bus = open(dir.path()).await;
        bus.subscribe(&s).await.unwrap();
        let m1 = bus.next(&s, Duration::ZERO).await.unwrap().unwrap();
        assert_eq!((m1.payload.as_slice(), m1.previous_attempts), (&b"m1"[..], 1));
        let m4 = bus.next(&s, Duration::ZERO).await.unwrap().unwrap();
        assert_eq!((m4.payload.as_slice(), m4.previous_attempts), (&b"m4"[..], 0), "m2 and m3 were settled");
        assert!(bus.next(&s, Duration::ZERO).await.unwrap().is_none());
        bus.ack(&s, &m4.id).await.unwrap();
        bus.ack(&s, &m1.id).await.unwrap();
        assert_eq!(bus.lag(&s).await.unwrap(), 0);
        let rows: i64 = bus.db.lock().unwrap().query_row("SELECT COUNT(*) FROM bus_deliveries", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 0, "nothing left to remember once all is settled");
    }

    #[tokio::test]
    async fn a_file_from_before_keeps_its_message_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        {
            let conn = Connection::open(&file).unwrap();
            conn.execute_batch(
                "CREATE TABLE bus_messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, channel TEXT NOT NULL,
                   payload BLOB NOT NULL, target TEXT, published_ms INTEGER NOT NULL);
                 CREATE TABLE bus_subscriptions (channel TEXT NOT NULL, subscriber TEXT NOT NULL,
                   acked_seq INTEGER NOT NULL DEFAULT 0, inflight_seq INTEGER,
                   inflight_attempts INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (channel, subscriber));
                 INSERT INTO bus_messages (channel, payload, published_ms) VALUES ('orders', CAST('done' AS BLOB), 0), ('orders', CAST('taken' AS BLOB), 0);
                 INSERT INTO bus_subscriptions VALUES ('orders', 'mailer', 1, 2, 3);",
            )
            .unwrap();
        }
        let bus = open(dir.path()).await;
        let s = sub("orders", "mailer");
        bus.subscribe(&s).await.unwrap();
        let d = bus.next(&s, Duration::ZERO).await.unwrap().unwrap();
        assert_eq!((d.payload.as_slice(), d.previous_attempts), (&b"taken"[..], 3));
    }

    /// `PRAGMA synchronous` of the bus's connection: 2 is FULL.
    fn synchronous(bus: &EmbeddedBus) -> i64 {
        bus.db.lock().unwrap().query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap()
    }

    #[tokio::test]
    async fn publishes_sync_fully_whatever_the_bookkeeping_did_before() {
        let dir = tempfile::tempdir().unwrap();
        let bus = open(dir.path()).await;
        let s = sub("orders", "mailer");
        bus.subscribe(&s).await.unwrap();
        assert_eq!(synchronous(&bus), 2);
        bus.publish("orders", b"m").await.unwrap();
        let d = bus.next(&s, Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(synchronous(&bus), 2, "after taking a message in flight");
        bus.ack(&s, &d.id).await.unwrap();
        assert_eq!(synchronous(&bus), 2, "after an ack");
        // Bookkeeping that fails still leaves the connection syncing fully.
        let failed = bus.with_db(|conn| relaxed(conn, |conn| Ok(conn.execute("UPDATE no_such_table SET x = 1", [])?))).await;
        assert!(failed.is_err());
        assert_eq!(synchronous(&bus), 2, "after failed bookkeeping");
    }

    #[tokio::test]
    async fn next_waits_for_a_publish() {
        let dir = tempfile::tempdir().unwrap();
        let bus = Arc::new(open(dir.path()).await);
        let s = sub("c", "s");
        bus.subscribe(&s).await.unwrap();
        let waiter = tokio::spawn({
            let (bus, s) = (bus.clone(), s.clone());
            async move { bus.next(&s, Duration::from_secs(10)).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        bus.publish("c", b"late").await.unwrap();
        assert_eq!(waiter.await.unwrap().unwrap().payload, b"late");
    }

    #[tokio::test]
    async fn dead_letters_are_listed_and_replayed_to_their_subscriber_only() {
        let dir = tempfile::tempdir().unwrap();
        let bus = open(dir.path()).await;
        let (a, b) = (sub("c", "a"), sub("c", "b"));
        bus.subscribe(&a).await.unwrap();
        bus.subscribe(&b).await.unwrap();
        bus.publish("c", b"poison").await.unwrap();
        let d = bus.next(&a, Duration::ZERO).await.unwrap().unwrap();
        bus.dead_letter(&a, &d, 5, "boom").await.unwrap();
        assert!(bus.next(&a, Duration::ZERO).await.unwrap().is_none());
        let dead = bus.dead_letters().await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].subscriber.as_str(), dead[0].attempts, dead[0].error.as_str()), ("a", 5, "boom"));

        let db = bus.next(&b, Duration::ZERO).await.unwrap().unwrap();
        bus.ack(&b, &db.id).await.unwrap();
        bus.replay(&dead[0].id).await.unwrap();
        assert!(bus.dead_letters().await.unwrap().is_empty());
        assert_eq!(bus.next(&a, Duration::ZERO).await.unwrap().unwrap().payload, b"poison");
        assert!(bus.next(&b, Duration::ZERO).await.unwrap().is_none(), "b already handled it");
        assert!(bus.replay("999").await.unwrap_err().to_string().contains("no dead letter"));
    }
}
