//! Producers across a switch: producer ids of the old cluster remapped
//! onto ids of the new one (sequences rebased per partition), transactions
//! from before the switch, and the fresh producer ids kflip asks clusters
//! for.

use std::collections::HashMap;

use super::tracker::{prune, Remap, MAX_IDS};
use super::{ClientKey, OldProducer, Switchboard, Tracker};
use crate::config::ClusterName;
use crate::kafka::KafkaConn;

impl Tracker {
    /// Whether this is the first abort of the transaction of
    /// `(producer_id, producer_epoch)` on the old cluster.
    pub fn first_abort(&self, producer_id: i64, producer_epoch: i16) -> bool {
        let mut inner = self.lock();
        if inner.aborted.len() > MAX_IDS {
            inner.aborted.clear();
        }
        inner.aborted.insert((producer_id, producer_epoch))
    }

    /// The new cluster issued `producer_id` to `key` under `epoch`.
    pub fn producer_issued(&self, key: &ClientKey, producer_id: i64, epoch: u64) {
        let mut inner = self.lock();
        prune(&mut inner.producers, epoch);
        inner.producers.insert((key.clone(), producer_id), epoch);
    }

    /// Whether `producer_id` from `key` belongs to an older epoch than
    /// `epoch` (first sight counts as the current epoch).
    pub fn producer_is_old(&self, key: &ClientKey, producer_id: i64, epoch: u64) -> bool {
        let mut inner = self.lock();
        prune(&mut inner.producers, epoch);
        *inner
            .producers
            .entry((key.clone(), producer_id))
            .or_insert(epoch)
            < epoch
    }

    /// The producer id and epoch on `cluster` that stand for the old
    /// cluster's `(producer_id, producer_epoch)` of `key` in `epoch`;
    /// obtained from `cluster` on first use.
    pub async fn remap(
        &self,
        board: &Switchboard,
        cluster: &ClusterName,
        key: &ClientKey,
        producer_id: i64,
        producer_epoch: i16,
        epoch: u64,
    ) -> Result<(i64, i16), String> {
        let id = (key.clone(), producer_id, producer_epoch, epoch);
        if let Some(r) = self.lock().remaps.get(&id) {
            return Ok((r.producer_id, r.producer_epoch));
        }
        let _one = self.init.lock().await;
        if let Some(r) = self.lock().remaps.get(&id) {
            return Ok((r.producer_id, r.producer_epoch));
        }
        let (pid, pepoch) = init_producer_id(board, cluster)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(
            client = %key.0,
            old_producer_id = producer_id,
            producer_id = pid,
            "idempotent producer from the old cluster remapped"
        );
        let mut inner = self.lock();
        if inner.remaps.len() > MAX_IDS {
            inner.remaps.retain(|k, _| k.3 >= epoch);
        }
        inner.remaps.insert(
            id,
            Remap {
                producer_id: pid,
                producer_epoch: pepoch,
                base: HashMap::new(),
                old_txn_open: false,
            },
        );
        Ok((pid, pepoch))
    }

    /// The id and epoch a transactional producer's old `(producer_id,
    /// producer_epoch)` stands for after its transaction from before the
    /// switch was aborted, if it was.
    pub fn remapped(
        &self,
        key: &ClientKey,
        producer_id: i64,
        producer_epoch: i16,
        epoch: u64,
    ) -> Option<(i64, i16)> {
        self.lock()
            .remaps
            .get(&(key.clone(), producer_id, producer_epoch, epoch))
            .map(|r| (r.producer_id, r.producer_epoch))
    }

    /// Records that a transactional producer's old `(producer_id,
    /// producer_epoch)` goes on as `fresh`, an id the active cluster issued
    /// for its transactional id.
    pub fn remap_transactional(
        &self,
        key: &ClientKey,
        (producer_id, producer_epoch, epoch): OldProducer,
        fresh: (i64, i16),
    ) {
        let mut inner = self.lock();
        if inner.remaps.len() > MAX_IDS {
            inner.remaps.retain(|k, _| k.3 >= epoch);
        }
        inner.remaps.insert(
            (key.clone(), producer_id, producer_epoch, epoch),
            Remap {
                producer_id: fresh.0,
                producer_epoch: fresh.1,
                base: HashMap::new(),
                old_txn_open: true,
            },
        );
    }

    /// Whether the remapped transactional producer's transaction from
    /// before the switch is still open in the client.
    pub fn old_txn_open(&self, key: &ClientKey, old: OldProducer) -> bool {
        self.lock()
            .remaps
            .get(&(key.clone(), old.0, old.1, old.2))
            .is_some_and(|r| r.old_txn_open)
    }

    /// The client ended its transaction from before the switch (it aborted
    /// it, or began another).
    pub fn close_old_txn(&self, key: &ClientKey, old: OldProducer) {
        if let Some(r) = self
            .lock()
            .remaps
            .get_mut(&(key.clone(), old.0, old.1, old.2))
        {
            r.old_txn_open = false;
        }
    }

    /// The sequence to send for `sequence` of a remapped producer on
    /// `topic`/`partition`: rebased so the first one after the switch is 0.
    pub fn rebase(
        &self,
        key: &ClientKey,
        (producer_id, producer_epoch, epoch): OldProducer,
        topic: &str,
        partition: i32,
        sequence: i32,
    ) -> i32 {
        let mut inner = self.lock();
        let Some(r) = inner
            .remaps
            .get_mut(&(key.clone(), producer_id, producer_epoch, epoch))
        else {
            return sequence;
        };
        let base = *r
            .base
            .entry((topic.to_string(), partition))
            .or_insert(sequence);
        // Sequences wrap from i32::MAX to 0.
        (i64::from(sequence) - i64::from(base)).rem_euclid(i64::from(i32::MAX) + 1) as i32
    }
}

/// Why kflip could not get a producer id from a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    /// No broker of the cluster answered.
    #[error("cannot reach {cluster} for a producer id: {message}")]
    Unreachable {
        /// The cluster.
        cluster: ClusterName,
        /// What failed.
        message: String,
    },
    /// The broker answered with an error code.
    #[error("{cluster} refused a producer id: error {code}")]
    Refused {
        /// The cluster.
        cluster: ClusterName,
        /// Its Kafka error code.
        code: i16,
    },
}

impl ProducerIdError {
    /// The error code to give the client: the broker's own (a broker that
    /// has just started answers COORDINATOR_LOAD_IN_PROGRESS, which every
    /// client retries), or COORDINATOR_LOAD_IN_PROGRESS when no broker
    /// answered. Not COORDINATOR_NOT_AVAILABLE: kafka-python answers that
    /// by looking up a transaction coordinator for a null transactional
    /// id, a request Apache Kafka refuses by closing the connection.
    pub fn client_code(&self) -> i16 {
        match self {
            ProducerIdError::Refused { code, .. } => *code,
            ProducerIdError::Unreachable { .. } => 14,
        }
    }
}

/// Asks `cluster` for a fresh idempotent producer id.
pub async fn init_producer_id(
    board: &Switchboard,
    cluster: &ClusterName,
) -> Result<(i64, i16), ProducerIdError> {
    use kafka_protocol::messages::InitProducerIdRequest;
    let unreachable = |e: crate::kafka::ClientError| ProducerIdError::Unreachable {
        cluster: cluster.clone(),
        message: e.to_string(),
    };
    let boot = board.cluster(cluster);
    let timeout = board.proxy_config().connect_timeout;
    let mut conn = KafkaConn::connect_any(&boot, timeout)
        .await
        .map_err(unreachable)?;
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id((-1).into())
        .with_producer_epoch(-1);
    // v3: the first with producer id and epoch fields, which tansu 0.6 needs.
    let resp = conn.send(&req, 3).await.map_err(unreachable)?;
    if resp.error_code != 0 {
        return Err(ProducerIdError::Refused {
            cluster: cluster.clone(),
            code: resp.error_code,
        });
    }
    Ok((resp.producer_id.0, resp.producer_epoch))
}
