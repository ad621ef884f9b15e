//! The librdkafka clients of a started flow: the source consumer and the
//! target producers.

use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{Producer, ThreadedProducer};

use super::deliver::{Deliver, SourceStats};
use super::error::{Error, Side};
use super::flow::FlowSetup;
use super::runner::TIMEOUT;
use super::txn::TRANSACTION_TIMEOUT;
use crate::cluster::rdkafka::client_config;

/// The consumer that reads the source: read_committed, manual assignment.
pub(super) fn source_consumer(setup: &FlowSetup) -> Result<BaseConsumer<SourceStats>, Error> {
    let st = &setup.state;
    let cfg = &st.cfg;
    client_config(&setup.clusters.source, "kflip-engine")
        .map_err(|e| Error::cluster(Side::Source, cfg.source.as_str(), "set up the login", e))?
        .set("group.id", format!("_kflip-engine-{}", cfg.id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "error")
        .set("statistics.interval.ms", "1000")
        // Brokers answer a fetch as soon as data is there; the wait only
        // matters when the source is idle, and on brokers that hold
        // every fetch for the whole wait (see `compat`).
        .set(
            "fetch.wait.max.ms",
            cfg.fetch_wait.as_millis().max(1).to_string(),
        )
        .set("fetch.min.bytes", cfg.fetch_min_bytes.to_string())
        .set("fetch.max.bytes", "52428800")
        .set(
            "max.partition.fetch.bytes",
            cfg.fetch_partition_bytes.to_string(),
        )
        .set("queued.max.messages.kbytes", "262144")
        .create_with_context(SourceStats(st.clone()))
        .map_err(|e| {
            Error::cluster(
                Side::Source,
                cfg.source.as_str(),
                "create the source consumer",
                e,
            )
        })
}

/// A producer to the target: idempotent, acks=all, and never giving up on
/// a record; with `transactional_id`, transactional, its first transaction
/// begun (see `super::txn`).
pub(super) fn target_producer(
    setup: &FlowSetup,
    transactional_id: Option<&str>,
) -> Result<ThreadedProducer<Deliver>, Error> {
    let st = &setup.state;
    let cfg = &st.cfg;
    let err = |op: &str, e: rdkafka::error::KafkaError| {
        Error::cluster(Side::Target, cfg.target.as_str(), op, e)
    };
    let mut c = client_config(&setup.clusters.target, "kflip-engine")
        .map_err(|e| Error::cluster(Side::Target, cfg.target.as_str(), "set up the login", e))?;
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("max.in.flight.requests.per.connection", "5")
        .set("message.timeout.ms", "0")
        .set("linger.ms", cfg.linger.as_millis().to_string())
        .set("batch.size", cfg.batch_bytes.to_string())
        .set(
            "queue.buffering.max.messages",
            cfg.max_buffered_records.to_string(),
        )
        .set("queue.buffering.max.kbytes", "1048576")
        .set("compression.type", "none");
    if let Some(id) = transactional_id {
        let t = TRANSACTION_TIMEOUT.as_millis().to_string();
        c.set("transactional.id", id)
            .set("transaction.timeout.ms", &t)
            // A transactional producer's records may not outlive its
            // transaction; a record that times out fails the commit, and
            // the flow starts again from what was committed.
            .set("message.timeout.ms", &t);
    }
    let p: ThreadedProducer<Deliver> = c
        .create_with_context(Deliver(st.clone()))
        .map_err(|e| err("create the target producer", e))?;
    if transactional_id.is_some() {
        p.init_transactions(TIMEOUT)
            .map_err(|e| err("start transactions", e))?;
        p.begin_transaction()
            .map_err(|e| err("begin a transaction", e))?;
    }
    Ok(p)
}
