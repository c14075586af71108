//! Cluster metadata: bootstrap, brokers, partition leaders, topic creation.

use crate::conn::{ConnError, ConnectOptions, Connection};
use crate::wire::codes::{self, KafkaCode};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::time::{Duration, Instant};

/// Metadata versions this client reads (v4 adds auto-create control).
const METADATA_VERSIONS: (i16, i16) = (4, 12);
const CREATE_TOPICS_VERSIONS: (i16, i16) = (2, 7);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no bootstrap server answered within {timeout:?} (tried {servers}): {last}. \
         Check --bootstrap, that the brokers run and listen there, and the firewall"
    )]
    Unreachable {
        servers: String,
        timeout: Duration,
        last: Box<ConnError>,
    },
    #[error(
        "topic '{topic}' does not exist. Add --create-topic (with --partitions and \
         --replication-factor) to create it, or create it with Kafka's kafka-topics.sh --create"
    )]
    TopicMissing { topic: String },
    #[error("topic '{topic}': {code}{}", hint(.code))]
    TopicError { topic: String, code: KafkaCode },
    #[error("creating topic '{topic}' failed: {code}{}{}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default(), hint(.code))]
    CreateFailed {
        topic: String,
        code: KafkaCode,
        message: Option<String>,
    },
    #[error("topic '{topic}' has partitions without a leader after {waited:?}: {partitions:?}")]
    NoLeader {
        topic: String,
        partitions: Vec<i32>,
        waited: Duration,
    },
    #[error(
        "partition leader {leader} of topic '{topic}' is not among the brokers in the metadata"
    )]
    UnknownLeader { topic: String, leader: i32 },
    #[error(transparent)]
    Conn(#[from] ConnError),
}

fn hint(code: &KafkaCode) -> String {
    code.hint.map(|h| format!(". {h}")).unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub id: i32,
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub id: i32,
    pub leader: i32,
    pub error: i16,
}

#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    pub error: i16,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Debug, Clone)]
pub struct ClusterInfo {
    pub cluster_id: Option<String>,
    pub controller: i32,
    pub brokers: Vec<Broker>,
    pub topics: Vec<TopicInfo>,
}

impl ClusterInfo {
    pub fn broker(&self, id: i32) -> Option<&Broker> {
        self.brokers.iter().find(|b| b.id == id)
    }

    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// The topic's partitions, each with its leader's address, or the error
    /// that stops a producer from using it.
    pub fn leaders(&self, topic: &str) -> Result<Vec<(i32, Broker)>, ClusterError> {
        let t = self
            .topic(topic)
            .ok_or_else(|| ClusterError::TopicMissing {
                topic: topic.to_owned(),
            })?;
        match t.error {
            0 => {}
            3 => {
                return Err(ClusterError::TopicMissing {
                    topic: topic.to_owned(),
                })
            }
            code => {
                return Err(ClusterError::TopicError {
                    topic: topic.to_owned(),
                    code: codes::lookup(code),
                })
            }
        }
        t.partitions
            .iter()
            .map(|p| {
                let b = self.broker(p.leader).ok_or(ClusterError::UnknownLeader {
                    topic: topic.to_owned(),
                    leader: p.leader,
                })?;
                Ok((p.id, b.clone()))
            })
            .collect()
    }
}

/// Connects to the first bootstrap server that answers, over plain TCP.
pub async fn bootstrap(
    servers: &[String],
    client_id: &str,
    timeout: Duration,
) -> Result<Connection, ClusterError> {
    bootstrap_with(servers, &ConnectOptions::plaintext(client_id, timeout)).await
}

/// Connects to the first bootstrap server that answers, with the given
/// client id, time limit (for all servers together) and security. A TLS or
/// SASL failure ends the search at once: the next server would refuse the
/// same certificate or password, and the error says what to fix.
pub async fn bootstrap_with(
    servers: &[String],
    opts: &ConnectOptions<'_>,
) -> Result<Connection, ClusterError> {
    let timeout = opts.timeout;
    let deadline = Instant::now() + timeout;
    let mut last = None;
    for s in servers {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match Connection::connect_with(
            s,
            &ConnectOptions {
                timeout: left,
                ..*opts
            },
        )
        .await
        {
            Ok(c) => return Ok(c),
            Err(e) if e.is_security() => return Err(ClusterError::Conn(e)),
            Err(e) => last = Some(e),
        }
    }
    Err(ClusterError::Unreachable {
        servers: servers.join(","),
        timeout,
        last: Box::new(last.unwrap_or(ConnError::Timeout {
            addr: servers.join(","),
            timeout,
        })),
    })
}

/// Fetches brokers and the given topics' partitions (no auto-creation).
pub async fn metadata(conn: &mut Connection, topics: &[&str]) -> Result<ClusterInfo, ClusterError> {
    let version = conn.version_for::<MetadataRequest>(METADATA_VERSIONS)?;
    let req = MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                .collect(),
        ))
        .with_allow_auto_topic_creation(false);
    let resp = conn.request(&req, version).await?;
    Ok(ClusterInfo {
        cluster_id: resp.cluster_id.map(|s| s.to_string()),
        controller: resp.controller_id.0,
        brokers: resp
            .brokers
            .iter()
            .map(|b| Broker {
                id: b.node_id.0,
                addr: format!("{}:{}", b.host, b.port),
            })
            .collect(),
        topics: resp
            .topics
            .iter()
            .map(|t| TopicInfo {
                name: t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                error: t.error_code,
                partitions: {
                    let mut ps: Vec<_> = t
                        .partitions
                        .iter()
                        .map(|p| PartitionInfo {
                            id: p.partition_index,
                            leader: p.leader_id.0,
                            error: p.error_code,
                        })
                        .collect();
                    ps.sort_by_key(|p| p.id);
                    ps
                },
            })
            .collect(),
    })
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i16,
}

/// Whether `create_topic` made the topic or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    Existed,
}

/// Creates a topic; an existing topic is not an error.
pub async fn create_topic(
    conn: &mut Connection,
    spec: &TopicSpec,
) -> Result<Created, ClusterError> {
    let version = conn.version_for::<CreateTopicsRequest>(CREATE_TOPICS_VERSIONS)?;
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(&spec.name))
            .with_num_partitions(spec.partitions)
            .with_replication_factor(spec.replication_factor)])
        .with_timeout_ms(30_000);
    let resp = conn.request(&req, version).await?;
    let result = resp.topics.first();
    match result.map(|r| r.error_code) {
        Some(0) => Ok(Created::New),
        Some(36) => Ok(Created::Existed),
        Some(code) => Err(ClusterError::CreateFailed {
            topic: spec.name.clone(),
            code: codes::lookup(code),
            message: result.and_then(|r| r.error_message.as_ref().map(|m| m.to_string())),
        }),
        None => Err(ClusterError::CreateFailed {
            topic: spec.name.clone(),
            code: codes::lookup(-1),
            message: Some("empty CreateTopics response".into()),
        }),
    }
}

/// Polls metadata until every partition of `topic` has a leader, or `wait` passes.
pub async fn wait_for_leaders(
    conn: &mut Connection,
    topic: &str,
    wait: Duration,
) -> Result<ClusterInfo, ClusterError> {
    let start = Instant::now();
    loop {
        let info = metadata(conn, &[topic]).await?;
        let t = info.topic(topic);
        let pending: Vec<i32> = match t {
            Some(t) if t.error == 0 && !t.partitions.is_empty() => t
                .partitions
                .iter()
                .filter(|p| p.leader < 0 || info.broker(p.leader).is_none())
                .map(|p| p.id)
                .collect(),
            Some(t) if t.error != 0 && !codes::lookup(t.error).retriable => {
                return info.leaders(topic).map(|_| info.clone())
            }
            _ => vec![-1],
        };
        if pending.is_empty() {
            return Ok(info);
        }
        if start.elapsed() >= wait {
            if t.is_none() || t.is_some_and(|t| t.error == 3) {
                return Err(ClusterError::TopicMissing {
                    topic: topic.to_owned(),
                });
            }
            return Err(ClusterError::NoLeader {
                topic: topic.to_owned(),
                partitions: pending,
                waited: wait,
            });
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every broker that leads a partition of `topic` says so itself.
///
/// Right after a topic is created (or a leader moves), the controller's
/// choice reaches the brokers one by one; a Produce sent to a broker that has
/// not caught up is answered NOT_LEADER_OR_FOLLOWER. Asking each leader for
/// its own view of the topic closes that window before the run starts.
pub async fn wait_until_leaders_agree(
    info: &ClusterInfo,
    topic: &str,
    client_id: &str,
    wait: Duration,
) -> Result<(), ClusterError> {
    let opts = ConnectOptions::plaintext(client_id, wait);
    wait_until_leaders_agree_with(info, topic, &opts, wait).await
}

/// [`wait_until_leaders_agree`] over connections opened with `opts` (its
/// timeout is ignored: each connection gets what is left of `wait`).
pub async fn wait_until_leaders_agree_with(
    info: &ClusterInfo,
    topic: &str,
    opts: &ConnectOptions<'_>,
    wait: Duration,
) -> Result<(), ClusterError> {
    let start = Instant::now();
    let leaders = info.leaders(topic)?;
    let mut pending: Vec<Broker> = Vec::new();
    for (_, b) in &leaders {
        if !pending.contains(b) {
            pending.push(b.clone());
        }
    }
    while !pending.is_empty() {
        let left = wait.saturating_sub(start.elapsed());
        let broker = pending[0].clone();
        let conn_opts = ConnectOptions {
            timeout: left.max(Duration::from_secs(1)),
            ..*opts
        };
        let mut conn = Connection::connect_with(&broker.addr, &conn_opts).await?;
        loop {
            let view = metadata(&mut conn, &[topic]).await?;
            let agrees = leaders
                .iter()
                .filter(|(_, b)| b.id == broker.id)
                .all(|(p, _)| {
                    view.topic(topic).is_some_and(|t| {
                        t.error == 0
                            && t.partitions
                                .iter()
                                .any(|vp| vp.id == *p && vp.leader == broker.id && vp.error == 0)
                    })
                });
            if agrees {
                break;
            }
            if start.elapsed() >= wait {
                return Err(ClusterError::NoLeader {
                    topic: topic.to_owned(),
                    partitions: leaders
                        .iter()
                        .filter(|(_, b)| b.id == broker.id)
                        .map(|(p, _)| *p)
                        .collect(),
                    waited: wait,
                });
            }
            glommio::timer::sleep(Duration::from_millis(100)).await;
        }
        pending.remove(0);
    }
    Ok(())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}
