//! Admin requests rdkafka 0.39 does not expose, spoken directly in the
//! Kafka protocol: `DescribeQuorum` v0 (who leads the KRaft quorum, how far
//! each voter got), sent to a controller listener, and `ElectLeaders` v2
//! (preferred leader election), sent to a broker, which forwards it to the
//! active controller. The image has no `kafka-tools` jar, so the
//! command-line tools are not an option.
//!
//! `CreateAcls` v3 gives the security scenarios' producer user its topic
//! rights (see [`crate::secure`]).
//!
//! Also `Metadata` v12, because a fresh librdkafka client does not keep to
//! its bootstrap broker (it moves to a learned broker, any one), so it
//! cannot tell what one given broker says.
//!
//! All are "flexible" versions: request header v2, response header v1,
//! compact strings and arrays, tagged fields (always empty here).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::meta::{PartitionState, Snapshot};
use crate::kafka::Error;

const METADATA: i16 = 3;
const DESCRIBE_QUORUM: i16 = 55;
const ELECT_LEADERS: i16 = 43;
/// `ELECTION_NOT_NEEDED`: the preferred leader already leads.
const ELECTION_NOT_NEEDED: i16 = 84;
/// How long an election may take (the request's own timeout, and ours).
const ELECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a quorum description may take: short, because a broker holds
/// the request while the controller it forwards to is frozen, and callers
/// poll while the quorum elects a new leader.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn i8(&mut self, v: i8) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    /// A compact array or string length (`n + 1`).
    fn len(&mut self, n: usize) {
        self.uvarint(n as u64 + 1);
    }
    fn compact_str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn no_tags(&mut self) {
        self.uvarint(0);
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Error> {
        if self.0.len() < n {
            return Err("truncated Kafka response".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16, Error> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, Error> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, Error> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(i64::from_be_bytes(b))
    }
    fn uvarint(&mut self) -> Result<u64, Error> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("bad varint in Kafka response".into())
    }
    /// A compact array or string length; `None` for null.
    fn len(&mut self) -> Result<Option<usize>, Error> {
        Ok(usize::try_from(self.uvarint()?)?.checked_sub(1))
    }
    fn i32_array(&mut self) -> Result<Vec<i32>, Error> {
        (0..self.len()?.unwrap_or(0)).map(|_| self.i32()).collect()
    }
    fn compact_str(&mut self) -> Result<Option<String>, Error> {
        match self.len()? {
            None => Ok(None),
            Some(n) => Ok(Some(String::from_utf8_lossy(self.take(n)?).into_owned())),
        }
    }
    fn skip_tags(&mut self) -> Result<(), Error> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let size = usize::try_from(self.uvarint()?)?;
            self.take(size)?;
        }
        Ok(())
    }
}

/// Sends one request to `addr` and returns the response body (after the
/// response header).
async fn call(
    addr: &str,
    api_key: i16,
    version: i16,
    body: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, Error> {
    let exchange = async {
        let mut header = Writer::default();
        header.i16(api_key);
        header.i16(version);
        header.i32(1); // correlation id
        let client_id = b"robust-producer-tests";
        header.i16(i16::try_from(client_id.len())?);
        header.0.extend_from_slice(client_id);
        header.no_tags();
        let size = i32::try_from(header.0.len() + body.len())?;
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(&size.to_be_bytes()).await?;
        stream.write_all(&header.0).await?;
        stream.write_all(body).await?;
        let size = usize::try_from(stream.read_i32().await?)?;
        let mut response = vec![0u8; size];
        stream.read_exact(&mut response).await?;
        Ok::<_, Error>(response)
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer from {addr} within {timeout:?}"))??;
    let mut r = Reader(&response);
    if r.i32()? != 1 {
        return Err("response for another request".into());
    }
    r.skip_tags()?;
    Ok(r.0.to_vec())
}

/// What the KRaft quorum leader says of the quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Quorum {
    /// The leader's node id.
    pub(crate) leader: i32,
    /// The metadata log's high watermark.
    pub(crate) high_watermark: i64,
    /// Each voter's log end offset, as the leader last saw it (a voter that
    /// is down keeps its last value).
    pub(crate) voters: BTreeMap<i32, i64>,
}

/// The KRaft quorum (`DescribeQuorum` v0), asked of the controller at
/// `addr`; only the leader answers (the others: `NOT_LEADER_OR_FOLLOWER`).
pub(crate) async fn describe_quorum(addr: &str) -> Result<Quorum, Error> {
    let mut w = Writer::default();
    w.len(1); // topics
    w.compact_str("__cluster_metadata");
    w.len(1); // partitions
    w.i32(0);
    w.no_tags();
    w.no_tags();
    w.no_tags();
    let body = call(addr, DESCRIBE_QUORUM, 0, &w.0, DESCRIBE_TIMEOUT).await?;
    let mut r = Reader(&body);
    let error = r.i16()?;
    if error != 0 {
        return Err(format!("DescribeQuorum failed: error code {error}").into());
    }
    let topics = r.len()?.unwrap_or(0);
    if topics == 0 {
        return Err("DescribeQuorum: no topic in the response".into());
    }
    r.compact_str()?;
    if r.len()?.unwrap_or(0) == 0 {
        return Err("DescribeQuorum: no partition in the response".into());
    }
    r.i32()?; // partition index
    let error = r.i16()?;
    if error != 0 {
        return Err(format!("DescribeQuorum partition error code {error}").into());
    }
    let leader = r.i32()?;
    if leader < 0 {
        return Err("the quorum has no leader now".into());
    }
    r.i32()?; // leader epoch
    let high_watermark = r.i64()?;
    let mut voters = BTreeMap::new();
    for _ in 0..r.len()?.unwrap_or(0) {
        let id = r.i32()?;
        voters.insert(id, r.i64()?);
        r.skip_tags()?;
    }
    Ok(Quorum {
        leader,
        high_watermark,
        voters,
    })
}

/// Elects the preferred leader of each of `partitions` of `topic`, through
/// the broker at `addr`. Partitions already led by it are fine; any other
/// per-partition error fails.
pub(crate) async fn elect_preferred(
    addr: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<(), Error> {
    let mut w = Writer::default();
    w.i8(0); // PREFERRED
    w.len(1); // topics
    w.compact_str(topic);
    w.len(partitions.len());
    for p in partitions {
        w.i32(*p);
    }
    w.no_tags();
    w.i32(i32::try_from(ELECT_TIMEOUT.as_millis())?);
    w.no_tags();
    let body = call(
        addr,
        ELECT_LEADERS,
        2,
        &w.0,
        ELECT_TIMEOUT + Duration::from_secs(5),
    )
    .await?;
    let mut r = Reader(&body);
    r.i32()?; // throttle
    let error = r.i16()?;
    if error != 0 {
        return Err(format!("ElectLeaders failed: error code {error}").into());
    }
    let mut failed = Vec::new();
    for _ in 0..r.len()?.unwrap_or(0) {
        let name = r.compact_str()?.unwrap_or_default();
        for _ in 0..r.len()?.unwrap_or(0) {
            let partition = r.i32()?;
            let code = r.i16()?;
            let message = r.compact_str()?;
            r.skip_tags()?;
            if code != 0 && code != ELECTION_NOT_NEEDED {
                failed.push(format!("{name}-{partition}: error {code} {message:?}"));
            }
        }
        r.skip_tags()?;
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("preferred election failed: {failed:?}").into())
    }
}

/// The metadata (brokers, and `topic`'s partitions if asked) as the broker
/// at `addr` itself sees it.
pub(crate) async fn metadata(
    addr: &str,
    topic: Option<&str>,
    timeout: Duration,
) -> Result<Snapshot, Error> {
    let mut w = Writer::default();
    match topic {
        None => w.len(0),
        Some(topic) => {
            w.len(1);
            w.0.extend_from_slice(&[0; 16]); // topic id: none, by name
            w.compact_str(topic);
            w.no_tags();
        }
    }
    w.i8(0); // allow_auto_topic_creation
    w.i8(0); // include_topic_authorized_operations
    w.no_tags();
    let body = call(addr, METADATA, 12, &w.0, timeout).await?;
    let mut r = Reader(&body);
    r.i32()?; // throttle
    let mut snapshot = Snapshot::default();
    for _ in 0..r.len()?.unwrap_or(0) {
        snapshot.brokers.insert(r.i32()?);
        r.compact_str()?; // host
        r.i32()?; // port
        r.compact_str()?; // rack
        r.skip_tags()?;
    }
    r.compact_str()?; // cluster id
    r.i32()?; // controller id (a random broker under KRaft)
    for _ in 0..r.len()?.unwrap_or(0) {
        let error = r.i16()?;
        let name = r.compact_str()?.unwrap_or_default();
        r.take(16)?; // topic id
        r.take(1)?; // is_internal
        for _ in 0..r.len()?.unwrap_or(0) {
            r.i16()?; // partition error (LEADER_NOT_AVAILABLE comes with leader -1)
            let partition = r.i32()?;
            let leader = r.i32()?;
            r.i32()?; // leader epoch
            let replicas = r.i32_array()?;
            let mut isr = r.i32_array()?;
            isr.sort_unstable();
            r.i32_array()?; // offline replicas
            r.skip_tags()?;
            snapshot.partitions.insert(
                partition,
                PartitionState {
                    leader: (leader >= 0).then_some(leader),
                    replicas,
                    isr,
                },
            );
        }
        r.i32()?; // authorized operations
        r.skip_tags()?;
        if error != 0 {
            return Err(format!("topic {name}: error code {error}").into());
        }
    }
    if let Some(topic) = topic
        && snapshot.partitions.is_empty()
    {
        return Err(format!("topic {topic} has no partitions").into());
    }
    Ok(snapshot)
}

const CREATE_ACLS: i16 = 30;

/// One ACL to create: allow `principal` (`User:name`) `operations` on the
/// topics whose names start with `prefix`, from any host.
#[derive(Debug, Clone)]
pub(crate) struct TopicPrefixAcl<'a> {
    /// `User:<name>`.
    pub(crate) principal: &'a str,
    /// Topic name prefix (pattern type `PREFIXED`).
    pub(crate) prefix: &'a str,
    /// Kafka's operation codes (`WRITE` 4, `CREATE` 5, `DESCRIBE` 8, ...).
    pub(crate) operations: &'a [i8],
}

/// Creates `acls` (`CreateAcls` v3), asked of the broker at `addr` by a
/// principal allowed to (a super user).
pub(crate) async fn create_topic_prefix_acls(
    addr: &str,
    acls: &[TopicPrefixAcl<'_>],
) -> Result<(), Error> {
    const TOPIC: i8 = 2;
    const PREFIXED: i8 = 4;
    const ALLOW: i8 = 3;
    let count = acls.iter().map(|a| a.operations.len()).sum();
    let mut w = Writer::default();
    w.len(count);
    for acl in acls {
        for op in acl.operations {
            w.i8(TOPIC);
            w.compact_str(acl.prefix);
            w.i8(PREFIXED);
            w.compact_str(acl.principal);
            w.compact_str("*");
            w.i8(*op);
            w.i8(ALLOW);
            w.no_tags();
        }
    }
    w.no_tags();
    let body = call(addr, CREATE_ACLS, 3, &w.0, ELECT_TIMEOUT).await?;
    let mut r = Reader(&body);
    r.i32()?; // throttle
    let mut failed = Vec::new();
    for _ in 0..r.len()?.unwrap_or(0) {
        let code = r.i16()?;
        let message = r.compact_str()?;
        r.skip_tags()?;
        if code != 0 {
            failed.push(format!("error {code} {message:?}"));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("CreateAcls failed: {failed:?}").into())
    }
}
