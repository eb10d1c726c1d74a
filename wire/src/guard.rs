//! The allocation guard in front of kafka-protocol's generated decoders.
//!
//! kafka-protocol 0.18 decodes an array by reading its element count from the wire and calling
//! `Vec::with_capacity(count)` before reading any element. A body of a few bytes can therefore
//! ask for `2^31 * size_of::<T>()` bytes and abort the process. The crate has no hook to stop
//! it, and its decoders only see a `ByteBuf`, which cannot tell a count from any other integer.
//!
//! So before a body reaches the generated decoder, `check` walks it with a copy of the
//! message's schema (field order, types, the versions each field exists in, the known tagged
//! fields) and refuses it if any array count, string or bytes length could not fit in the bytes
//! left at that point. The argument that this is sound:
//!
//! 1. The walk reads exactly what the generated decoder reads, in the same order, for every body
//!    it accepts: same field list per version, same length encodings, and known tagged fields are
//!    decoded in place (the generated code ignores their size prefix, so the walk does too).
//!    Unsigned varints the two could read differently (over 32 bits) are refused. The tests
//!    check the schemas by encoding populated requests of every supported version with
//!    kafka-protocol and requiring the walk to consume exactly the encoded bytes.
//! 2. So when the generated decoder reaches an array count `n`, the walk has seen the same `n` at
//!    the same position and checked `n * min_element_bytes <= remaining`, with
//!    `min_element_bytes >= 1`. Every `with_capacity` is thus bounded by the body length, and a
//!    body is bounded by `frame_bytes_max` (Produce) or a per-API limit (everything else).
//! 3. So one reservation is at most `size_of::<T>() / min_element_bytes` times the bytes left.
//!    The worst ratio among the supported messages is 40 (a 120-byte element that can be 3 bytes
//!    on the wire, e.g. LeaveGroup v4 members; arrays of strings: 32 bytes per 1-byte element),
//!    so no single reservation exceeds 40 times the body. Arrays filled successfully have
//!    consumed their bytes, and at most one unfinished reservation per nesting level (depth at
//!    most 3) is live, so the total stays under about 160 times the body: 160 MiB for the
//!    1 MiB control-plane limit ([`crate::request::RequestLimits`]) in the worst case, and
//!    Produce, whose topic and partition elements take at least 3 bytes, under about 40 times.
//!    `tests/request_guard.rs` checks the single-reservation bound (with margin: 48x) on random
//!    hostile bodies with a counting allocator.
//!
//! Bodies the walk accepts can still be refused by the generated decoder (bad UTF-8, a null
//! where none is allowed, an unknown tag in the wrong version): the walk is only as strict as it
//! must be to bound memory.

use crate::codec::{read_i16, read_i32, read_uvarint, take};
use crate::error::WireError;

/// A field type as the walk needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    I8,
    I16,
    I32,
    I64,
    Uuid,
    /// String (nullable or not).
    Str,
    /// Bytes or records (nullable or not).
    Bytes,
    /// A nested struct (only as a tagged field).
    Struct(&'static Struct),
    /// Array of structs (nullable or not).
    Structs(&'static Struct),
    /// Array of int32.
    I32s,
    /// Array of int64.
    I64s,
    /// Array of strings.
    Strs,
}

/// A field present in versions `min..=max`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    ty: Ty,
    min: i16,
    max: i16,
}

/// A tagged field the generated decoder knows (and so decodes in place).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tag {
    tag: u32,
    ty: Ty,
    min: i16,
    max: i16,
}

/// A struct's fields, in wire order, and its known tagged fields.
#[derive(Debug)]
pub(crate) struct Struct {
    fields: &'static [Field],
    tags: &'static [Tag],
}

/// A request body's schema.
#[derive(Debug)]
pub(crate) struct Schema {
    /// First version using compact lengths and tagged fields.
    flexible_min: i16,
    root: Struct,
}

const ANY: i16 = i16::MAX;

const fn f(ty: Ty, min: i16, max: i16) -> Field {
    Field { ty, min, max }
}

const fn all(ty: Ty) -> Field {
    Field {
        ty,
        min: 0,
        max: ANY,
    }
}

const fn fields(fields: &'static [Field]) -> Struct {
    Struct { fields, tags: &[] }
}

struct Walk<'a> {
    cur: &'a [u8],
    version: i16,
    flexible: bool,
}

/// Checks that `body` (a request body of `version`) declares no length the bytes cannot back.
///
/// # Errors
/// [`WireError::LengthExceedsInput`] for a count or length over the bytes left,
/// [`WireError::Truncated`] or [`WireError::Malformed`] for bodies the walk cannot follow.
pub(crate) fn check(schema: &Schema, version: i16, body: &[u8]) -> Result<(), WireError> {
    let mut walk = Walk {
        cur: body,
        version,
        flexible: version >= schema.flexible_min,
    };
    walk.structure(&schema.root)
}

/// Bytes of `body` the walk consumes (tests use this to check schemas against real encodings).
#[cfg(test)]
pub(crate) fn consumed(schema: &Schema, version: i16, body: &[u8]) -> Result<usize, WireError> {
    let mut walk = Walk {
        cur: body,
        version,
        flexible: version >= schema.flexible_min,
    };
    walk.structure(&schema.root)?;
    Ok(body.len() - walk.cur.len())
}

impl Walk<'_> {
    fn structure(&mut self, s: &Struct) -> Result<(), WireError> {
        for field in s.fields {
            if field.min <= self.version && self.version <= field.max {
                self.value(field.ty)?;
            }
        }
        if self.flexible {
            self.tagged_fields(s.tags)?;
        }
        Ok(())
    }

    fn tagged_fields(&mut self, known: &[Tag]) -> Result<(), WireError> {
        let count = read_uvarint(&mut self.cur)?;
        for _ in 0..count {
            let tag = read_uvarint(&mut self.cur)?;
            let size = read_uvarint(&mut self.cur)? as usize;
            match known.iter().find(|t| t.tag == tag) {
                Some(t) if t.min <= self.version && self.version <= t.max => self.value(t.ty)?,
                // The generated decoder refuses a known tag outside its versions.
                Some(_) => {
                    return Err(WireError::Malformed {
                        what: "tagged field",
                    })
                }
                None => {
                    take(&mut self.cur, size)?;
                }
            }
        }
        Ok(())
    }

    fn value(&mut self, ty: Ty) -> Result<(), WireError> {
        match ty {
            Ty::I8 => self.skip(1),
            Ty::I16 => self.skip(2),
            Ty::I32 => self.skip(4),
            Ty::I64 => self.skip(8),
            Ty::Uuid => self.skip(16),
            Ty::Str => {
                let len = self.length(LenKind::Str)?;
                self.skip(len.unwrap_or(0))
            }
            Ty::Bytes => {
                let len = self.length(LenKind::Bytes)?;
                self.skip(len.unwrap_or(0))
            }
            Ty::Struct(s) => self.structure(s),
            Ty::Structs(s) => {
                let count = self.count(self.struct_min_bytes(s))?;
                for _ in 0..count {
                    self.structure(s)?;
                }
                Ok(())
            }
            Ty::I32s => {
                let count = self.count(4)?;
                self.skip(count * 4)
            }
            Ty::I64s => {
                let count = self.count(8)?;
                self.skip(count * 8)
            }
            Ty::Strs => {
                let count = self.count(if self.flexible { 1 } else { 2 })?;
                for _ in 0..count {
                    self.value(Ty::Str)?;
                }
                Ok(())
            }
        }
    }

    fn skip(&mut self, n: usize) -> Result<(), WireError> {
        take(&mut self.cur, n).map(|_| ())
    }

    /// Reads a string or bytes length; `None` is null.
    fn length(&mut self, kind: LenKind) -> Result<Option<usize>, WireError> {
        let len: i64 = if self.flexible {
            i64::from(read_uvarint(&mut self.cur)?) - 1
        } else if kind == LenKind::Str {
            i64::from(read_i16(&mut self.cur)?)
        } else {
            i64::from(read_i32(&mut self.cur)?)
        };
        match len {
            -1 => Ok(None),
            len if len < -1 => Err(WireError::Malformed {
                what: "negative length",
            }),
            len => {
                self.bound(len as u64, 1)?;
                Ok(Some(len as usize))
            }
        }
    }

    /// Reads an array count and checks that `count` elements of at least `min_bytes` fit.
    fn count(&mut self, min_bytes: usize) -> Result<usize, WireError> {
        let count: i64 = if self.flexible {
            i64::from(read_uvarint(&mut self.cur)?) - 1
        } else {
            i64::from(read_i32(&mut self.cur)?)
        };
        match count {
            -1 => Ok(0),
            count if count < -1 => Err(WireError::Malformed {
                what: "negative array length",
            }),
            count => {
                self.bound(count as u64, min_bytes)?;
                Ok(count as usize)
            }
        }
    }

    fn bound(&self, declared: u64, min_bytes: usize) -> Result<(), WireError> {
        let min_bytes = min_bytes.max(1) as u64;
        if declared.saturating_mul(min_bytes) > self.cur.len() as u64 {
            return Err(WireError::LengthExceedsInput {
                declared,
                remaining: self.cur.len(),
            });
        }
        Ok(())
    }

    /// The fewest bytes one element of `s` takes at this version.
    fn struct_min_bytes(&self, s: &Struct) -> usize {
        let present = s
            .fields
            .iter()
            .filter(|f| f.min <= self.version && self.version <= f.max);
        let tagged = usize::from(self.flexible);
        present.map(|f| self.min_bytes(f.ty)).sum::<usize>() + tagged
    }

    fn min_bytes(&self, ty: Ty) -> usize {
        match (ty, self.flexible) {
            (Ty::I8, _) => 1,
            (Ty::I16, _) => 2,
            (Ty::I32, _) => 4,
            (Ty::I64, _) => 8,
            (Ty::Uuid, _) => 16,
            (Ty::Struct(s), _) => self.struct_min_bytes(s),
            (Ty::Str | Ty::Bytes | Ty::Structs(_) | Ty::I32s | Ty::I64s | Ty::Strs, true) => 1,
            (Ty::Str, false) => 2,
            (Ty::Bytes | Ty::Structs(_) | Ty::I32s | Ty::I64s | Ty::Strs, false) => 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LenKind {
    Str,
    Bytes,
}

// Schemas, from Kafka's message definitions (clients/src/main/resources/common/message), for
// the versions kafka-protocol 0.18 decodes. Nullability is not tracked: the walk accepts null
// everywhere and leaves refusing it to the generated decoder.

use Ty::{Bytes, I32s, I64s, Str, Strs, Structs, Uuid, I16, I32, I64, I8};

static PRODUCE_PARTITION: Struct = fields(&[all(I32), all(Bytes)]);
static PRODUCE_TOPIC: Struct = fields(&[
    f(Str, 0, 12),
    f(Uuid, 13, ANY),
    all(Structs(&PRODUCE_PARTITION)),
]);
pub(crate) static PRODUCE: Schema = Schema {
    flexible_min: 9,
    root: fields(&[
        f(Str, 3, ANY),
        all(I16),
        all(I32),
        all(Structs(&PRODUCE_TOPIC)),
    ]),
};

static FETCH_PARTITION: Struct = Struct {
    fields: &[
        all(I32),
        f(I32, 9, ANY),
        all(I64),
        f(I32, 12, ANY),
        f(I64, 5, ANY),
        all(I32),
    ],
    tags: &[
        Tag {
            tag: 0,
            ty: Uuid,
            min: 17,
            max: ANY,
        },
        Tag {
            tag: 1,
            ty: I64,
            min: 18,
            max: ANY,
        },
    ],
};
static FETCH_TOPIC: Struct = fields(&[
    f(Str, 0, 12),
    f(Uuid, 13, ANY),
    all(Structs(&FETCH_PARTITION)),
]);
static FETCH_FORGOTTEN: Struct = fields(&[f(Str, 7, 12), f(Uuid, 13, ANY), f(I32s, 7, ANY)]);
static FETCH_REPLICA_STATE: Struct = fields(&[all(I32), all(I64)]);
pub(crate) static FETCH: Schema = Schema {
    flexible_min: 12,
    root: Struct {
        fields: &[
            f(I32, 0, 14),
            all(I32),
            all(I32),
            f(I32, 3, ANY),
            f(I8, 4, ANY),
            f(I32, 7, ANY),
            f(I32, 7, ANY),
            all(Structs(&FETCH_TOPIC)),
            f(Structs(&FETCH_FORGOTTEN), 7, ANY),
            f(Str, 11, ANY),
        ],
        tags: &[
            Tag {
                tag: 0,
                ty: Str,
                min: 0,
                max: ANY,
            },
            Tag {
                tag: 1,
                ty: Ty::Struct(&FETCH_REPLICA_STATE),
                min: 15,
                max: ANY,
            },
        ],
    },
};

static LIST_OFFSETS_PARTITION: Struct = fields(&[all(I32), f(I32, 4, ANY), all(I64), f(I32, 0, 0)]);
static LIST_OFFSETS_TOPIC: Struct = fields(&[all(Str), all(Structs(&LIST_OFFSETS_PARTITION))]);
pub(crate) static LIST_OFFSETS: Schema = Schema {
    flexible_min: 6,
    root: fields(&[
        all(I32),
        f(I8, 2, ANY),
        all(Structs(&LIST_OFFSETS_TOPIC)),
        f(I32, 10, ANY),
    ]),
};

static METADATA_TOPIC: Struct = fields(&[f(Uuid, 10, ANY), all(Str)]);
pub(crate) static METADATA: Schema = Schema {
    flexible_min: 9,
    root: fields(&[
        all(Structs(&METADATA_TOPIC)),
        f(I8, 4, ANY),
        f(I8, 8, 10),
        f(I8, 8, ANY),
    ]),
};

static CREATE_TOPICS_ASSIGNMENT: Struct = fields(&[all(I32), all(I32s)]);
static CREATE_TOPICS_CONFIG: Struct = fields(&[all(Str), all(Str)]);
static CREATE_TOPICS_TOPIC: Struct = fields(&[
    all(Str),
    all(I32),
    all(I16),
    all(Structs(&CREATE_TOPICS_ASSIGNMENT)),
    all(Structs(&CREATE_TOPICS_CONFIG)),
]);
pub(crate) static CREATE_TOPICS: Schema = Schema {
    flexible_min: 5,
    root: fields(&[all(Structs(&CREATE_TOPICS_TOPIC)), all(I32), f(I8, 1, ANY)]),
};

static DELETE_TOPICS_TOPIC: Struct = fields(&[all(Str), all(Uuid)]);
pub(crate) static DELETE_TOPICS: Schema = Schema {
    flexible_min: 4,
    root: fields(&[
        f(Structs(&DELETE_TOPICS_TOPIC), 6, ANY),
        f(Strs, 0, 5),
        all(I32),
    ]),
};

static CREATE_PARTITIONS_ASSIGNMENT: Struct = fields(&[all(I32s)]);
static CREATE_PARTITIONS_TOPIC: Struct = fields(&[
    all(Str),
    all(I32),
    all(Structs(&CREATE_PARTITIONS_ASSIGNMENT)),
]);
pub(crate) static CREATE_PARTITIONS: Schema = Schema {
    flexible_min: 2,
    root: fields(&[all(Structs(&CREATE_PARTITIONS_TOPIC)), all(I32), all(I8)]),
};

static DESCRIBE_CONFIGS_RESOURCE: Struct = fields(&[all(I8), all(Str), all(Strs)]);
pub(crate) static DESCRIBE_CONFIGS: Schema = Schema {
    flexible_min: 4,
    root: fields(&[
        all(Structs(&DESCRIBE_CONFIGS_RESOURCE)),
        all(I8),
        f(I8, 3, ANY),
    ]),
};

static ALTER_CONFIGS_CONFIG: Struct = fields(&[all(Str), all(Str)]);
static ALTER_CONFIGS_RESOURCE: Struct =
    fields(&[all(I8), all(Str), all(Structs(&ALTER_CONFIGS_CONFIG))]);
pub(crate) static ALTER_CONFIGS: Schema = Schema {
    flexible_min: 2,
    root: fields(&[all(Structs(&ALTER_CONFIGS_RESOURCE)), all(I8)]),
};

static INCREMENTAL_ALTER_CONFIGS_CONFIG: Struct = fields(&[all(Str), all(I8), all(Str)]);
static INCREMENTAL_ALTER_CONFIGS_RESOURCE: Struct = fields(&[
    all(I8),
    all(Str),
    all(Structs(&INCREMENTAL_ALTER_CONFIGS_CONFIG)),
]);
pub(crate) static INCREMENTAL_ALTER_CONFIGS: Schema = Schema {
    flexible_min: 1,
    root: fields(&[all(Structs(&INCREMENTAL_ALTER_CONFIGS_RESOURCE)), all(I8)]),
};

static OFFSET_FOR_LEADER_EPOCH_PARTITION: Struct = fields(&[all(I32), f(I32, 2, ANY), all(I32)]);
static OFFSET_FOR_LEADER_EPOCH_TOPIC: Struct =
    fields(&[all(Str), all(Structs(&OFFSET_FOR_LEADER_EPOCH_PARTITION))]);
pub(crate) static OFFSET_FOR_LEADER_EPOCH: Schema = Schema {
    flexible_min: 4,
    root: fields(&[f(I32, 3, ANY), all(Structs(&OFFSET_FOR_LEADER_EPOCH_TOPIC))]),
};

pub(crate) static API_VERSIONS: Schema = Schema {
    flexible_min: 3,
    root: fields(&[f(Str, 3, ANY), f(Str, 3, ANY)]),
};

pub(crate) static INIT_PRODUCER_ID: Schema = Schema {
    flexible_min: 2,
    root: fields(&[all(Str), all(I32), f(I64, 3, ANY), f(I16, 3, ANY)]),
};

static ADD_PARTITIONS_TO_TXN_TOPIC: Struct = fields(&[all(Str), all(I32s)]);
static ADD_PARTITIONS_TO_TXN_TRANSACTION: Struct = fields(&[
    all(Str),
    all(I64),
    all(I16),
    all(I8),
    all(Structs(&ADD_PARTITIONS_TO_TXN_TOPIC)),
]);
pub(crate) static ADD_PARTITIONS_TO_TXN: Schema = Schema {
    flexible_min: 3,
    root: fields(&[
        f(Structs(&ADD_PARTITIONS_TO_TXN_TRANSACTION), 4, ANY),
        f(Str, 0, 3),
        f(I64, 0, 3),
        f(I16, 0, 3),
        f(Structs(&ADD_PARTITIONS_TO_TXN_TOPIC), 0, 3),
    ]),
};

pub(crate) static ADD_OFFSETS_TO_TXN: Schema = Schema {
    flexible_min: 3,
    root: fields(&[all(Str), all(I64), all(I16), all(Str)]),
};

pub(crate) static END_TXN: Schema = Schema {
    flexible_min: 3,
    root: fields(&[all(Str), all(I64), all(I16), all(I8)]),
};

static TXN_OFFSET_COMMIT_PARTITION: Struct =
    fields(&[all(I32), all(I64), f(I32, 2, ANY), all(Str)]);
static TXN_OFFSET_COMMIT_TOPIC: Struct =
    fields(&[all(Str), all(Structs(&TXN_OFFSET_COMMIT_PARTITION))]);
pub(crate) static TXN_OFFSET_COMMIT: Schema = Schema {
    flexible_min: 3,
    root: fields(&[
        all(Str),
        all(Str),
        all(I64),
        all(I16),
        f(I32, 3, ANY),
        f(Str, 3, ANY),
        f(Str, 3, ANY),
        all(Structs(&TXN_OFFSET_COMMIT_TOPIC)),
    ]),
};

pub(crate) static FIND_COORDINATOR: Schema = Schema {
    flexible_min: 3,
    root: fields(&[f(Str, 0, 3), f(I8, 1, ANY), f(Strs, 4, ANY)]),
};

static JOIN_GROUP_PROTOCOL: Struct = fields(&[all(Str), all(Bytes)]);
pub(crate) static JOIN_GROUP: Schema = Schema {
    flexible_min: 6,
    root: fields(&[
        all(Str),
        all(I32),
        f(I32, 1, ANY),
        all(Str),
        f(Str, 5, ANY),
        all(Str),
        all(Structs(&JOIN_GROUP_PROTOCOL)),
        f(Str, 8, ANY),
    ]),
};

static SYNC_GROUP_ASSIGNMENT: Struct = fields(&[all(Str), all(Bytes)]);
pub(crate) static SYNC_GROUP: Schema = Schema {
    flexible_min: 4,
    root: fields(&[
        all(Str),
        all(I32),
        all(Str),
        f(Str, 3, ANY),
        f(Str, 5, ANY),
        f(Str, 5, ANY),
        all(Structs(&SYNC_GROUP_ASSIGNMENT)),
    ]),
};

pub(crate) static HEARTBEAT: Schema = Schema {
    flexible_min: 4,
    root: fields(&[all(Str), all(I32), all(Str), f(Str, 3, ANY)]),
};

static LEAVE_GROUP_MEMBER: Struct = fields(&[all(Str), all(Str), f(Str, 5, ANY)]);
pub(crate) static LEAVE_GROUP: Schema = Schema {
    flexible_min: 4,
    root: fields(&[
        all(Str),
        f(Str, 0, 2),
        f(Structs(&LEAVE_GROUP_MEMBER), 3, ANY),
    ]),
};

pub(crate) static DESCRIBE_GROUPS: Schema = Schema {
    flexible_min: 5,
    // include_authorized_operations is a bool: one byte, like an int8.
    root: fields(&[all(Strs), f(I8, 3, ANY)]),
};

pub(crate) static LIST_GROUPS: Schema = Schema {
    flexible_min: 3,
    root: fields(&[f(Strs, 4, ANY), f(Strs, 5, ANY)]),
};

pub(crate) static DELETE_GROUPS: Schema = Schema {
    flexible_min: 2,
    root: fields(&[all(Strs)]),
};

static OFFSET_DELETE_PARTITION: Struct = fields(&[all(I32)]);
static OFFSET_DELETE_TOPIC: Struct = fields(&[all(Str), all(Structs(&OFFSET_DELETE_PARTITION))]);
static DELETE_RECORDS_PARTITION: Struct = fields(&[all(I32), all(I64)]);
static DELETE_RECORDS_TOPIC: Struct = fields(&[all(Str), all(Structs(&DELETE_RECORDS_PARTITION))]);
pub(crate) static DELETE_RECORDS: Schema = Schema {
    flexible_min: 2,
    root: fields(&[all(Structs(&DELETE_RECORDS_TOPIC)), all(I32)]),
};
static DESCRIBE_LOG_DIRS_TOPIC: Struct = fields(&[all(Str), all(I32s)]);
pub(crate) static DESCRIBE_LOG_DIRS: Schema = Schema {
    // The topics array is nullable (null: every partition).
    flexible_min: 2,
    root: fields(&[all(Structs(&DESCRIBE_LOG_DIRS_TOPIC))]),
};
static DESCRIBE_QUORUM_TOPIC: Struct =
    fields(&[all(Str), all(Structs(&DESCRIBE_QUORUM_PARTITION))]);
static DESCRIBE_QUORUM_PARTITION: Struct = fields(&[all(I32)]);
pub(crate) static DESCRIBE_QUORUM: Schema = Schema {
    // Every version is flexible; v1 and v2 changed only the response.
    flexible_min: 0,
    root: fields(&[all(Structs(&DESCRIBE_QUORUM_TOPIC))]),
};
static ELECT_LEADERS_TOPIC: Struct = fields(&[all(Str), all(I32s)]);
pub(crate) static ELECT_LEADERS: Schema = Schema {
    flexible_min: 2,
    // election_type (v1+), topic_partitions (nullable: every partition), timeout_ms.
    root: fields(&[f(I8, 1, ANY), all(Structs(&ELECT_LEADERS_TOPIC)), all(I32)]),
};
static ALTER_REASSIGNMENTS_PARTITION: Struct = fields(&[all(I32), all(I32s)]);
static ALTER_REASSIGNMENTS_TOPIC: Struct =
    fields(&[all(Str), all(Structs(&ALTER_REASSIGNMENTS_PARTITION))]);
pub(crate) static ALTER_PARTITION_REASSIGNMENTS: Schema = Schema {
    // Every version is flexible.
    flexible_min: 0,
    // timeout_ms, allow_replication_factor_change (v1+, KIP-860), topics (each partition's
    // replicas nullable: null cancels).
    root: fields(&[
        all(I32),
        f(I8, 1, ANY),
        all(Structs(&ALTER_REASSIGNMENTS_TOPIC)),
    ]),
};
static LIST_REASSIGNMENTS_TOPIC: Struct = fields(&[all(Str), all(I32s)]);
pub(crate) static LIST_PARTITION_REASSIGNMENTS: Schema = Schema {
    // Every version is flexible.
    flexible_min: 0,
    // timeout_ms, topics (nullable: every ongoing reassignment).
    root: fields(&[all(I32), all(Structs(&LIST_REASSIGNMENTS_TOPIC))]),
};
pub(crate) static UNREGISTER_BROKER: Schema = Schema {
    // Every version is flexible; broker_id.
    flexible_min: 0,
    root: fields(&[all(I32)]),
};
pub(crate) static DESCRIBE_CLUSTER: Schema = Schema {
    // Every version is flexible.
    flexible_min: 0,
    // include_cluster_authorized_operations, endpoint_type (v1+), include_fenced_brokers (v2+).
    root: fields(&[all(I8), f(I8, 1, ANY), f(I8, 2, ANY)]),
};

static DESCRIBE_PRODUCERS_TOPIC: Struct = fields(&[all(Str), all(I32s)]);
pub(crate) static DESCRIBE_PRODUCERS: Schema = Schema {
    // Every version is flexible; topics, each with its partition indexes.
    flexible_min: 0,
    root: fields(&[all(Structs(&DESCRIBE_PRODUCERS_TOPIC))]),
};
pub(crate) static DESCRIBE_TRANSACTIONS: Schema = Schema {
    // Every version is flexible; transactional ids.
    flexible_min: 0,
    root: fields(&[all(Strs)]),
};
pub(crate) static LIST_TRANSACTIONS: Schema = Schema {
    // Every version is flexible; state filters, producer id filters, duration filter (v1+,
    // KIP-994), transactional id pattern (v2+, KIP-1152; decoded, not advertised).
    flexible_min: 0,
    root: fields(&[all(Strs), all(I64s), f(I64, 1, ANY), f(Str, 2, ANY)]),
};

pub(crate) static OFFSET_DELETE: Schema = Schema {
    // No flexible version exists.
    flexible_min: ANY,
    root: fields(&[all(Str), all(Structs(&OFFSET_DELETE_TOPIC))]),
};

static OFFSET_COMMIT_PARTITION: Struct = fields(&[all(I32), all(I64), f(I32, 6, ANY), all(Str)]);
static OFFSET_COMMIT_TOPIC: Struct = fields(&[all(Str), all(Structs(&OFFSET_COMMIT_PARTITION))]);
pub(crate) static OFFSET_COMMIT: Schema = Schema {
    flexible_min: 8,
    root: fields(&[
        all(Str),
        all(I32),
        all(Str),
        f(Str, 7, ANY),
        f(I64, 2, 4),
        all(Structs(&OFFSET_COMMIT_TOPIC)),
    ]),
};

static OFFSET_FETCH_TOPIC: Struct = fields(&[all(Str), all(I32s)]);
static OFFSET_FETCH_GROUP: Struct = fields(&[
    all(Str),
    f(Str, 9, ANY),
    f(I32, 9, ANY),
    all(Structs(&OFFSET_FETCH_TOPIC)),
]);
pub(crate) static OFFSET_FETCH: Schema = Schema {
    flexible_min: 6,
    root: fields(&[
        f(Str, 0, 7),
        f(Structs(&OFFSET_FETCH_TOPIC), 0, 7),
        f(Structs(&OFFSET_FETCH_GROUP), 8, ANY),
        f(I8, 7, ANY),
    ]),
};
