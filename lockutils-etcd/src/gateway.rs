//! etcd's JSON gateway: the few calls a lock needs, over HTTP/1.1.
//!
//! Keys and values travel base64-encoded; 64-bit numbers arrive as JSON strings; fields equal
//! to their default (`false`, `0`, empty) are left out of answers.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::options::Options;

/// Why a call failed.
#[derive(Debug, Clone)]
pub(crate) enum Fail {
    /// No connection, or the connection broke (the server is down, unreachable, or the TLS
    /// handshake failed).
    Unreachable(String),
    /// No answer within this bound.
    Silent(Duration),
    /// The server answered with an error (`code` is the gRPC status code).
    Server { code: i64, message: String },
    /// An answer this client cannot read.
    Protocol(String),
}

impl Fail {
    /// etcd no longer knows the lease (expired or revoked).
    pub fn lease_not_found(&self) -> bool {
        matches!(self, Fail::Server { message, .. } if message.contains("lease not found"))
    }

    /// The reason, for an error whose target already names the server.
    pub fn reason(&self, endpoint: &str) -> String {
        match self {
            Fail::Unreachable(why) => format!("cannot reach etcd at {endpoint}: {why}"),
            Fail::Silent(bound) => {
                format!("etcd at {endpoint} did not answer within {bound:?}")
            }
            Fail::Server { code, message } => {
                format!("etcd at {endpoint} refused: {message} (code {code})")
            }
            Fail::Protocol(why) => format!("unexpected answer from etcd at {endpoint}: {why}"),
        }
    }
}

/// One key's state, as a range returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub lease: i64,
}

/// The outcome of tooz's acquire transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Try {
    /// Put: the key's create revision.
    Acquired(i64),
    /// Someone holds it; `revision` is the store's revision the transaction saw.
    Busy { revision: i64 },
}

/// What a watch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The key was deleted (released, its lease revoked or expired).
    Deleted,
    /// The server ended the watch (the revision was compacted, or it cancelled it): try
    /// again.
    Ended,
}

/// A client of one etcd endpoint's gateway.
#[derive(Clone)]
pub(crate) struct Gateway {
    http: reqwest::Client,
    base: Arc<str>,
    pub endpoint: Arc<str>,
    pub answer_timeout: Duration,
}

impl Gateway {
    pub fn new(options: &Options) -> Result<Gateway, String> {
        let tls = crate::tls::client_config(options)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(15))
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {}", explain(&e)))?;
        Ok(Gateway {
            http,
            base: format!("{}/{}/", options.endpoint, options.api_version).into(),
            endpoint: options.endpoint.clone().into(),
            answer_timeout: options.answer_timeout,
        })
    }

    /// POSTs `body` to `path`, waiting at most `bound` for the whole answer.
    async fn call(&self, path: &str, body: Value, bound: Duration) -> Result<Value, Fail> {
        let request = async {
            let response = self
                .http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .map_err(|e| Fail::Unreachable(explain(&e)))?;
            let status = response.status();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| Fail::Unreachable(explain(&e)))?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
                Fail::Protocol(format!(
                    "HTTP {status}, not JSON ({} bytes); is this etcd's client port?",
                    bytes.len()
                ))
            })?;
            if let Some(fail) = server_error(&value) {
                return Err(fail);
            }
            if !status.is_success() {
                return Err(Fail::Protocol(format!("HTTP {status}")));
            }
            Ok(value)
        };
        match tokio::time::timeout(bound, request).await {
            Ok(result) => result,
            Err(_) => Err(Fail::Silent(bound)),
        }
    }

    /// Grants a lease of `ttl` seconds: its id and the TTL etcd gave (it may raise a short one
    /// to its minimum).
    pub async fn grant(&self, ttl: u64) -> Result<(i64, u64), Fail> {
        let answer = self
            .call(
                "lease/grant",
                json!({ "TTL": ttl.to_string() }),
                self.answer_timeout,
            )
            .await?;
        if let Some(error) = answer
            .get("error")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
        {
            return Err(Fail::Server {
                code: 0,
                message: error.to_owned(),
            });
        }
        let id = int(&answer, "ID")
            .filter(|id| *id != 0)
            .ok_or_else(|| Fail::Protocol("a lease grant without a lease id".to_owned()))?;
        let granted = int(&answer, "TTL").unwrap_or(0);
        Ok((id, u64::try_from(granted).unwrap_or(ttl).max(1)))
    }

    /// Revokes a lease, deleting the keys attached to it.
    pub async fn revoke(&self, lease: i64, bound: Duration) -> Result<(), Fail> {
        self.call("lease/revoke", json!({ "ID": lease.to_string() }), bound)
            .await
            .map(drop)
    }

    /// Refreshes a lease: its TTL from now, 0 if etcd no longer knows it.
    pub async fn keep_alive(&self, lease: i64, bound: Duration) -> Result<i64, Fail> {
        let answer = self
            .call("lease/keepalive", json!({ "ID": lease.to_string() }), bound)
            .await?;
        let result = answer.get("result").unwrap_or(&answer);
        Ok(int(result, "TTL").unwrap_or(0))
    }

    /// The TTL left of a lease in seconds, `None` if etcd no longer knows it.
    pub async fn time_to_live(&self, lease: i64, bound: Duration) -> Result<Option<i64>, Fail> {
        let answer = self
            .call(
                "lease/timetolive",
                json!({ "ID": lease.to_string() }),
                bound,
            )
            .await?;
        Ok(int(&answer, "TTL").filter(|ttl| *ttl >= 0))
    }

    /// tooz's acquire try: if the key does not exist, put `value` with `lease`; otherwise
    /// range it.
    pub async fn try_acquire(&self, key: &[u8], value: &[u8], lease: i64) -> Result<Try, Fail> {
        let key = B64.encode(key);
        let body = json!({
            "compare": [{ "key": key, "result": "EQUAL", "target": "CREATE", "create_revision": "0" }],
            "success": [{ "request_put": { "key": key, "value": B64.encode(value), "lease": lease.to_string() } }],
            "failure": [{ "request_range": { "key": key } }],
        });
        let answer = self.call("kv/txn", body, self.answer_timeout).await?;
        let revision = answer
            .get("header")
            .and_then(|h| int(h, "revision"))
            .ok_or_else(|| Fail::Protocol("a transaction without a revision".to_owned()))?;
        if answer.get("succeeded").and_then(Value::as_bool) == Some(true) {
            // The put is the transaction's one write: the key was created at its revision.
            Ok(Try::Acquired(revision))
        } else {
            Ok(Try::Busy { revision })
        }
    }

    /// Puts a key (no lease): the benchmark's bare round trip.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), Fail> {
        let body = json!({ "key": B64.encode(key), "value": B64.encode(value) });
        self.call("kv/put", body, self.answer_timeout)
            .await
            .map(drop)
    }

    /// Deletes a key: the benchmark's bare round trip.
    pub async fn delete(&self, key: &[u8]) -> Result<(), Fail> {
        let body = json!({ "key": B64.encode(key) });
        self.call("kv/deleterange", body, self.answer_timeout)
            .await
            .map(drop)
    }

    /// The key's state, `None` if it does not exist.
    pub async fn get(&self, key: &[u8], bound: Duration) -> Result<Option<Kv>, Fail> {
        let answer = self
            .call("kv/range", json!({ "key": B64.encode(key) }), bound)
            .await?;
        Ok(kvs(&answer)?.into_iter().next())
    }

    /// Every key starting with `prefix`.
    pub async fn get_prefix(&self, prefix: &[u8]) -> Result<Vec<Kv>, Fail> {
        let body =
            json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) });
        let answer = self.call("kv/range", body, self.answer_timeout).await?;
        kvs(&answer)
    }

    /// Opens a watch of `key`'s deletions from `start_revision` on.
    pub async fn watch(&self, key: &[u8], start_revision: i64) -> Result<Watch, Fail> {
        let body = json!({ "create_request": {
            "key": B64.encode(key),
            "start_revision": start_revision.to_string(),
            "filters": ["NOPUT"],
        }});
        let send = self
            .http
            .post(format!("{}watch", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send();
        let response = match tokio::time::timeout(self.answer_timeout, send).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(Fail::Unreachable(explain(&e))),
            Err(_) => return Err(Fail::Silent(self.answer_timeout)),
        };
        if !response.status().is_success() {
            return Err(Fail::Protocol(format!("watch: HTTP {}", response.status())));
        }
        Ok(Watch {
            response,
            buf: Vec::new(),
        })
    }
}

/// A watch stream: JSON messages, one after another, in the body of one response.
pub(crate) struct Watch {
    response: reqwest::Response,
    buf: Vec<u8>,
}

impl Watch {
    /// Waits for the next deletion (or the end of the watch). Cancel safe (the lease refresh
    /// of a waiter interrupts it): bytes read stay in the buffer until they make a whole
    /// message, and a message is taken out only to be acted on.
    pub async fn next(&mut self) -> Result<Change, Fail> {
        loop {
            while let Some(message) = self.take_message()? {
                if let Some(change) = change_of(&message)? {
                    return Ok(change);
                }
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => return Err(Fail::Unreachable("the watch stream ended".to_owned())),
                Err(e) => return Err(Fail::Unreachable(explain(&e))),
            }
        }
    }

    fn take_message(&mut self) -> Result<Option<Value>, Fail> {
        take_message(&mut self.buf)
    }
}

/// The first whole message in `buf`, taken out of it, if there is one.
fn take_message(buf: &mut Vec<u8>) -> Result<Option<Value>, Fail> {
    let mut stream = serde_json::Deserializer::from_slice(buf).into_iter::<Value>();
    match stream.next() {
        None => {
            buf.clear();
            Ok(None)
        }
        Some(Ok(value)) => {
            let used = stream.byte_offset();
            buf.drain(..used);
            Ok(Some(value))
        }
        Some(Err(e)) if e.is_eof() => Ok(None),
        Some(Err(e)) => Err(Fail::Protocol(format!("watch message: {e}"))),
    }
}

/// What one message of a watch stream says: a deletion, the watch's end, an error, or nothing
/// of interest (the watch's creation, progress, puts).
fn change_of(message: &Value) -> Result<Option<Change>, Fail> {
    if let Some(fail) = server_error(message) {
        return Err(fail);
    }
    let result = message.get("result").unwrap_or(message);
    // A PUT event has no "type" (the default value is left out); only deletions count.
    let deleted = result
        .get("events")
        .and_then(Value::as_array)
        .is_some_and(|events| {
            events
                .iter()
                .any(|e| e.get("type").and_then(Value::as_str) == Some("DELETE"))
        });
    if deleted {
        return Ok(Some(Change::Deleted));
    }
    if result.get("canceled").and_then(Value::as_bool) == Some(true) {
        return Ok(Some(Change::Ended));
    }
    Ok(None)
}

/// The error an answer carries, if any: `{"error": .., "code": .., "message": ..}`.
fn server_error(value: &Value) -> Option<Fail> {
    let error = value.get("error")?;
    // A watch stream wraps it: {"error": {"grpc_code": .., "message": ..}}.
    let (code, message) = match error {
        Value::Object(inner) => (
            inner
                .get("grpc_code")
                .or_else(|| inner.get("code"))
                .and_then(Value::as_i64)
                .unwrap_or(0),
            inner
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
        Value::String(text) => (
            value.get("code").and_then(Value::as_i64).unwrap_or(0),
            value
                .get("message")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .unwrap_or(text)
                .to_owned(),
        ),
        _ => return None,
    };
    if message.is_empty() && code == 0 {
        return None;
    }
    Some(Fail::Server { code, message })
}

fn kvs(answer: &Value) -> Result<Vec<Kv>, Fail> {
    let Some(list) = answer.get("kvs").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|kv| {
            let bytes = |field: &str| -> Result<Vec<u8>, Fail> {
                match kv.get(field).and_then(Value::as_str) {
                    None => Ok(Vec::new()),
                    Some(text) => B64
                        .decode(text)
                        .map_err(|_| Fail::Protocol(format!("{field} is not base64"))),
                }
            };
            Ok(Kv {
                key: bytes("key")?,
                value: bytes("value")?,
                create_revision: int(kv, "create_revision").unwrap_or(0),
                lease: int(kv, "lease").unwrap_or(0),
            })
        })
        .collect()
}

/// A 64-bit number of an answer: a JSON string (grpc-gateway's way) or a number.
fn int(value: &Value, field: &str) -> Option<i64> {
    match value.get(field)? {
        Value::String(text) => text.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The end of the range of keys starting with `prefix` (etcd's convention: the prefix with its
/// last byte below 0xff increased, the bytes after it dropped).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): to the end of the key space.
    vec![0]
}

/// `e` with its causes (the HTTP client's own text says little: "error sending request").
pub(crate) fn explain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let part = c.to_string();
        // reqwest names the URL; the caller names the endpoint already.
        let part = match part.find(" for url (") {
            Some(at) => part[..at].to_owned(),
            None => part,
        };
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/tooz/locks"), b"/tooz/lockt");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn server_errors_in_both_shapes() {
        let plain = json!({"error": "etcdserver: requested lease not found", "code": 5, "message": "etcdserver: requested lease not found"});
        let fail = server_error(&plain).unwrap();
        assert!(fail.lease_not_found());
        let wrapped = json!({"error": {"grpc_code": 14, "http_code": 503, "message": "etcdserver: no leader"}});
        match server_error(&wrapped).unwrap() {
            Fail::Server { code, message } => {
                assert_eq!((code, message.as_str()), (14, "etcdserver: no leader"))
            }
            other => panic!("{other:?}"),
        }
        assert!(server_error(&json!({"header": {}})).is_none());
    }

    #[test]
    fn watch_messages() {
        let created = json!({"result": {"header": {"revision": "7"}, "created": true}});
        assert!(change_of(&created).unwrap().is_none());
        let put = json!({"result": {"events": [{"kv": {"key": "YQ=="}}]}});
        assert!(change_of(&put).unwrap().is_none());
        let deleted = json!({"result": {"events": [{"type": "DELETE", "kv": {"key": "YQ=="}}]}});
        assert_eq!(change_of(&deleted).unwrap(), Some(Change::Deleted));
        let compacted = json!({"result": {"canceled": true, "compact_revision": "9"}});
        assert_eq!(change_of(&compacted).unwrap(), Some(Change::Ended));
        let error = json!({"error": {"grpc_code": 14, "message": "etcdserver: no leader"}});
        assert!(change_of(&error).is_err());
    }

    #[test]
    fn watch_streams_split_anywhere() {
        let one = br#"{"result":{"created":true}}"#;
        let two = br#"{"result":{"events":[{"type":"DELETE"}]}}"#;
        let mut stream = one.to_vec();
        stream.push(b'\n');
        stream.extend_from_slice(two);
        stream.push(b'\n');
        // Fed in every split: the same two messages, whole, in order.
        for cut in 0..stream.len() {
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                buf.extend_from_slice(part);
                while let Some(message) = take_message(&mut buf).unwrap() {
                    got.push(message);
                }
            }
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert_eq!(change_of(&got[1]).unwrap(), Some(Change::Deleted));
        }
        assert!(take_message(&mut b"{]".to_vec()).is_err());
    }

    #[test]
    fn numbers_as_strings_or_numbers() {
        let v = json!({"a": "12", "b": 13, "c": true});
        assert_eq!(int(&v, "a"), Some(12));
        assert_eq!(int(&v, "b"), Some(13));
        assert_eq!(int(&v, "c"), None);
        assert_eq!(int(&v, "d"), None);
    }
}
