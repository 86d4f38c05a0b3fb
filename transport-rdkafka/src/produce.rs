//! The hand-off of one record to librdkafka through `rd_kafka_produceva`,
//! with a topic handle kept per topic. This is the workspace's only unsafe
//! code.
//!
//! Why not rdkafka's `BaseProducer::send`: it copies the topic name into a
//! fresh `CString` for every record, and librdkafka then looks the topic up
//! by name under its client lock and releases it again, also per record.
//! With 100-byte records that was about 7% of the sending thread's time
//! (`perf`). A topic handle made once (`rd_kafka_topic_new`) costs one
//! reference count per record instead; past the producer's limit on
//! handles, a record names its topic ([`Destination::Name`]), as
//! `BaseProducer::send` does. Everything else is what
//! `BaseProducer::send` does: the payload, key and headers are copied by
//! librdkafka (`RD_KAFKA_MSG_F_COPY`) during the call, the partition is left
//! to librdkafka's partitioner, and the opaque is the record id, read back
//! by rdkafka's delivery-report handling as the `usize` delivery opaque.
//!
//! Ownership, from librdkafka's `rd_kafka_produceva`: a headers list passed
//! with `RD_KAFKA_VTYPE_HEADERS` belongs to the message once the call
//! succeeds, and stays the caller's when it fails; a returned error object
//! is the caller's to destroy.

#![expect(
    unsafe_code,
    reason = "rd_kafka_produceva and topic handles have no safe binding in rdkafka"
)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer as _;
use robust_producer::{Headers, Record};

use crate::client::RdProducer;

/// librdkafka's handle on one topic of one producer. It holds the producer,
/// so the handle is always destroyed before the producer is.
pub(crate) struct TopicHandle {
    name: Arc<str>,
    rkt: NonNull<rd::rd_kafka_topic_t>,
    producer: Arc<RdProducer>,
}

// SAFETY: librdkafka's topic handles are thread-safe reference-counted
// objects; they may be used and destroyed from any thread.
unsafe impl Send for TopicHandle {}

impl TopicHandle {
    /// A handle on `name` with the producer's default topic configuration,
    /// or `None` if librdkafka refuses one (the caller then names the topic
    /// in [`Destination::Name`], and librdkafka reports the problem).
    pub(crate) fn new(producer: &Arc<RdProducer>, name: &Arc<str>) -> Option<Self> {
        let c_name = CString::new(name.as_bytes()).ok()?;
        // SAFETY: the client pointer is valid while `producer` lives;
        // `c_name` is NUL-terminated and outlives the call; a null
        // configuration selects the default topic configuration.
        let rkt = unsafe {
            rd::rd_kafka_topic_new(
                producer.client().native_ptr(),
                c_name.as_ptr(),
                std::ptr::null_mut(),
            )
        };
        Some(Self {
            name: Arc::clone(name),
            rkt: NonNull::new(rkt)?,
            producer: Arc::clone(producer),
        })
    }

    /// Whether this is the handle of `topic`.
    pub(crate) fn is_for(&self, topic: &Arc<str>) -> bool {
        Arc::ptr_eq(&self.name, topic) || *self.name == **topic
    }
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: `rkt` came from `rd_kafka_topic_new` and is destroyed once,
        // here, while `self.producer` (dropped after this body) keeps the
        // client alive.
        unsafe { rd::rd_kafka_topic_destroy(self.rkt.as_ptr()) }
    }
}

/// Where a record goes.
pub(crate) enum Destination<'a> {
    /// A topic handle of the producer.
    Handle(&'a TopicHandle),
    /// A topic name, looked up by librdkafka.
    Name(&'a CStr),
}

/// A librdkafka headers list, destroyed on drop unless handed to a message.
struct NativeHeaders(NonNull<rd::rd_kafka_headers_t>);

impl NativeHeaders {
    /// The record's headers as a librdkafka list; `None` when there are
    /// none.
    fn new(headers: &Headers) -> Result<Option<Self>, KafkaError> {
        if headers.is_empty() {
            return Ok(None);
        }
        // SAFETY: plain constructor; it never fails (librdkafka aborts on
        // out-of-memory), the null check is for form.
        let list = unsafe { rd::rd_kafka_headers_new(headers.len()) };
        let Some(list) = NonNull::new(list).map(Self) else {
            return Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fail));
        };
        for (name, value) in headers {
            // SAFETY: `list` is a valid, writable headers list; name and
            // value are passed with their lengths (no NUL needed) and are
            // copied by librdkafka during the call.
            let err = unsafe {
                rd::rd_kafka_header_add(
                    list.0.as_ptr(),
                    name.as_ptr().cast::<c_char>(),
                    isize::try_from(name.len()).unwrap_or(isize::MAX),
                    value.as_ptr().cast::<c_void>(),
                    isize::try_from(value.len()).unwrap_or(isize::MAX),
                )
            };
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(KafkaError::MessageProduction(err.into()));
            }
        }
        Ok(Some(list))
    }
}

impl Drop for NativeHeaders {
    fn drop(&mut self) {
        // SAFETY: the list is ours (never handed to a message: see
        // `produce`, which forgets it once librdkafka owns it).
        unsafe { rd::rd_kafka_headers_destroy(self.0.as_ptr()) }
    }
}

fn value(vtype: rd::rd_kafka_vtype_t, u: rd::rd_kafka_vu_s__bindgen_ty_1) -> rd::rd_kafka_vu_t {
    rd::rd_kafka_vu_t { vtype, u }
}

fn bytes(b: &[u8]) -> rd::rd_kafka_vu_s__bindgen_ty_1 {
    rd::rd_kafka_vu_s__bindgen_ty_1 {
        mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
            // Read only: librdkafka copies it (RD_KAFKA_MSG_F_COPY).
            ptr: b.as_ptr().cast_mut().cast::<c_void>(),
            size: b.len(),
        },
    }
}

/// Hands `record` to librdkafka on `producer` (the producer of a
/// [`Destination::Handle`]), with `opaque` for its delivery report. The
/// same outcome as `BaseProducer::send`: `Ok` once librdkafka holds a copy,
/// or librdkafka's refusal.
pub(crate) fn produce(
    producer: &RdProducer,
    to: Destination<'_>,
    record: &Record,
    opaque: usize,
) -> Result<(), KafkaError> {
    use rd::rd_kafka_vtype_t as V;

    let headers = NativeHeaders::new(&record.headers)?;
    let topic = match to {
        Destination::Handle(handle) => {
            debug_assert!(std::ptr::eq(&*handle.producer, producer));
            value(
                V::RD_KAFKA_VTYPE_RKT,
                rd::rd_kafka_vu_s__bindgen_ty_1 {
                    rkt: handle.rkt.as_ptr(),
                },
            )
        }
        Destination::Name(name) => value(
            V::RD_KAFKA_VTYPE_TOPIC,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                cstr: name.as_ptr(),
            },
        ),
    };
    let mut args = [
        topic,
        value(
            V::RD_KAFKA_VTYPE_MSGFLAGS,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                i: rd::RD_KAFKA_MSG_F_COPY as c_int,
            },
        ),
        value(V::RD_KAFKA_VTYPE_VALUE, bytes(&record.payload)),
        value(
            V::RD_KAFKA_VTYPE_OPAQUE,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                ptr: std::ptr::without_provenance_mut(opaque),
            },
        ),
        // Overwritten or cut below. No partition: librdkafka's partitioner
        // chooses (`RD_KAFKA_PARTITION_UA` is produceva's default).
        value(V::RD_KAFKA_VTYPE_KEY, bytes(&[])),
        value(V::RD_KAFKA_VTYPE_KEY, bytes(&[])),
    ];
    let mut n = 4;
    if let Some(key) = &record.key {
        args[n] = value(V::RD_KAFKA_VTYPE_KEY, bytes(key));
        n += 1;
    }
    if let Some(list) = &headers {
        args[n] = value(
            V::RD_KAFKA_VTYPE_HEADERS,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                headers: list.0.as_ptr(),
            },
        );
        n += 1;
    }
    // SAFETY: the client pointer is valid while `producer` is borrowed (a
    // topic handle belongs to it); `args[..n]` is a valid array of `n`
    // typed values whose pointers (topic handle or NUL-terminated name,
    // payload, key, headers list) outlive the call, and the bytes are
    // copied before it returns.
    let error = unsafe { rd::rd_kafka_produceva(producer.client().native_ptr(), args.as_ptr(), n) };
    let Some(error) = NonNull::new(error) else {
        // The message owns the headers list now.
        std::mem::forget(headers);
        return Ok(());
    };
    // SAFETY: `error` is the error object just returned to us; it is read,
    // then destroyed once. The headers list stays ours and is dropped.
    let code = unsafe {
        let code = rd::rd_kafka_error_code(error.as_ptr());
        rd::rd_kafka_error_destroy(error.as_ptr());
        code
    };
    Err(KafkaError::MessageProduction(code.into()))
}
