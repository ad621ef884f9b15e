//! Many requests of one kind to a cluster's coordinators at once: each
//! coordinator's requests pipelined on up to [`LANES`] connections, the
//! coordinators concurrently.
//!
//! One connection alone is not enough for OffsetCommit: a broker answers
//! the requests of one connection one after another, so 500 pipelined
//! commits still wait for 500 appends to the offsets topic in turn. Over a
//! few connections the broker's request threads run them side by side and
//! its group coordinator writes the commits of one offsets partition in
//! fewer appends.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::protocol::Request;
use tokio::task::JoinSet;

use super::GroupAdmin;
use crate::kafka::{ClientError, KafkaConn, VersionTable};

/// Connections per coordinator that one batch uses at most.
const LANES: usize = 8;

/// Requests per connection below which a batch opens no other one: a
/// connection costs a connect, an ApiVersions and a SASL login.
const PER_LANE: usize = 32;

/// Each request's response, or the error of the connection that carried it,
/// in the order of the requests.
pub(super) type Outcomes<T> = Vec<Result<T, ClientError>>;

/// What one lane hands back: the cached connection it borrowed (to keep if
/// it still works) and its responses.
type LaneResult<T> = (
    Option<(KafkaConn, VersionTable)>,
    Result<Vec<T>, ClientError>,
);

impl GroupAdmin {
    /// Sends each coordinator's requests (at its version) and returns every
    /// request's outcome by coordinator. The first lane of a coordinator
    /// uses the cached connection; the others open their own and close them
    /// after. A connection that failed is dropped.
    pub(super) async fn fan_out<R>(
        &mut self,
        work: BTreeMap<String, (i16, Vec<R>)>,
    ) -> BTreeMap<String, Outcomes<R::Response>>
    where
        R: Request + Send + Sync + 'static,
        R::Response: Send,
    {
        let mut out = BTreeMap::new();
        let mut tasks: JoinSet<LaneResult<R::Response>> = JoinSet::new();
        // Task -> (coordinator, lane, requests in it).
        let mut lanes_of = HashMap::new();
        let mut slots: BTreeMap<String, Vec<Option<Outcomes<R::Response>>>> = BTreeMap::new();
        for (addr, (ver, reqs)) in work {
            let n = reqs.len();
            if let Err(e) = self.conn(Some(&addr)).await {
                out.insert(addr.clone(), copies(&addr, &e, n));
                continue;
            }
            let mut cached = self.conns.remove(&addr);
            let lanes = n.div_ceil(PER_LANE).clamp(1, LANES);
            let per = n.div_ceil(lanes).max(1);
            let mut reqs = reqs.into_iter();
            let mut lane = 0;
            loop {
                let chunk: Vec<R> = reqs.by_ref().take(per).collect();
                if chunk.is_empty() {
                    break;
                }
                let len = chunk.len();
                let conn = cached.take();
                let (cluster, timeout, at) = (self.cluster.clone(), self.timeout, addr.clone());
                let task = tasks.spawn(async move {
                    let (mut c, v) = match conn {
                        Some(c) => c,
                        None => match open(&cluster, &at, timeout).await {
                            Ok(c) => c,
                            Err(e) => return (None, Err(e)),
                        },
                    };
                    let r = c.send_many(&chunk, ver).await;
                    // Only the borrowed connection goes back to the cache.
                    (if lane == 0 { Some((c, v)) } else { None }, r)
                });
                lanes_of.insert(task.id(), (addr.clone(), lane, len));
                lane += 1;
            }
            slots.insert(addr, (0..lane).map(|_| None).collect());
        }
        while let Some(joined) = tasks.join_next_with_id().await {
            let (id, done) = match joined {
                Ok((id, done)) => (id, Ok(done)),
                Err(e) => (e.id(), Err(e.to_string())),
            };
            let Some((addr, lane, len)) = lanes_of.remove(&id) else {
                continue;
            };
            let outcomes = match done {
                Ok((conn, Ok(responses))) => {
                    if let Some(c) = conn {
                        self.conns.insert(addr.clone(), c);
                    }
                    responses.into_iter().map(Ok).collect()
                }
                Ok((_, Err(e))) => copies(&addr, &e, len),
                Err(panicked) => {
                    let e = self.err(format!("request task to {addr} failed: {panicked}"));
                    copies(&addr, &e, len)
                }
            };
            if let Some(slot) = slots.get_mut(&addr).and_then(|s| s.get_mut(lane)) {
                *slot = Some(outcomes);
            }
        }
        for (addr, lanes) in slots {
            out.insert(addr, lanes.into_iter().flatten().flatten().collect());
        }
        out
    }
}

/// A new connection to `addr`, with its versions.
async fn open(
    cluster: &crate::config::ClusterConfig,
    addr: &str,
    timeout: std::time::Duration,
) -> Result<(KafkaConn, VersionTable), ClientError> {
    let mut c = KafkaConn::connect(cluster, addr, timeout).await?;
    let v = c.api_versions().await?;
    Ok((c, v))
}

/// `e`, the failure of coordinator `addr`'s connection, once per request
/// (or group) it carried.
pub(super) fn copies<T>(addr: &str, e: &ClientError, n: usize) -> Outcomes<T> {
    (0..n).map(|_| Err(each(addr, e))).collect()
}

/// A copy of `e` for one request (or group) to coordinator `addr`.
pub(super) fn each(addr: &str, e: &ClientError) -> ClientError {
    let message = match e {
        ClientError::Exchange { message, .. } => message.clone(),
        other => other.to_string(),
    };
    ClientError::Exchange {
        addr: addr.to_string(),
        message,
    }
}
