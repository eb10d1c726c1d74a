//! KIP-430's authorized operations, as a broker without an authorizer reports them: every
//! operation Kafka supports on the resource type (`AuthHelper.authorizedOperations` with no
//! authorizer, `AclEntry.supportedOperations`), as a bit field of `AclOperation` codes.
//! Spate has no ACLs, so every client may do everything; when the client did not ask, the
//! answer is "not provided" (`i32::MIN`, the schema's default), as in Kafka.

/// Kafka's `AclOperation` codes.
const READ: u8 = 3;
const WRITE: u8 = 4;
const CREATE: u8 = 5;
const DELETE: u8 = 6;
const ALTER: u8 = 7;
const DESCRIBE: u8 = 8;
const CLUSTER_ACTION: u8 = 9;
const DESCRIBE_CONFIGS: u8 = 10;
const ALTER_CONFIGS: u8 = 11;
const IDEMPOTENT_WRITE: u8 = 12;

/// "Not provided": the client did not ask.
pub const OMITTED: i32 = i32::MIN;

const fn field(ops: &[u8]) -> i32 {
    let mut bits = 0i32;
    let mut i = 0;
    while i < ops.len() {
        bits |= 1 << ops[i];
        i += 1;
    }
    bits
}

/// A topic's: read, write, create, describe, delete, alter, describe and alter configs.
pub const TOPIC: i32 = field(&[
    READ,
    WRITE,
    CREATE,
    DESCRIBE,
    DELETE,
    ALTER,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
]);
/// A group's: read, describe, delete, describe and alter configs.
pub const GROUP: i32 = field(&[READ, DESCRIBE, DELETE, DESCRIBE_CONFIGS, ALTER_CONFIGS]);
/// The cluster's: create, cluster action, describe and alter configs, idempotent write, alter,
/// describe.
pub const CLUSTER: i32 = field(&[
    CREATE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
    ALTER,
    DESCRIBE,
]);

/// `ops` if the client asked for them, else "not provided".
pub fn if_asked(asked: bool, ops: i32) -> i32 {
    if asked {
        ops
    } else {
        OMITTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_fields_are_kafkas() {
        // The values a Kafka broker without an authorizer answers.
        assert_eq!(TOPIC, 3576);
        assert_eq!(GROUP, 3400);
        assert_eq!(CLUSTER, 8096);
        assert_eq!(if_asked(false, TOPIC), i32::MIN);
    }
}
