//! Checks a chitchat message before chitchat decodes it.
//!
//! chitchat 0.11.2 trusts its peers in two ways that a hostile or broken peer (one that holds
//! a certificate of the cluster) could turn against a node:
//! - a delta is a series of zstd blocks, and chitchat decompresses all of them before it
//!   decodes any, with no limit on the total: a 64 KiB message of tiny blocks that each
//!   inflate to 64 KiB costs hundreds of MiB;
//! - after applying a node's key-values, chitchat *asserts* that the delta's "set max version"
//!   is not below the highest key-value version it just applied. A delta that sets a lower one
//!   passes every decoding check, then panics chitchat's task and gossip stops for good.
//!
//! The guard walks the message the way chitchat's decoder does, with caps, and refuses
//! messages that would trip either. It never accepts anything chitchat would refuse; what it
//! lets through, chitchat decodes as before.

use std::cell::RefCell;

use chitchat::{ChitchatId, Deserializable};
use thiserror::Error;

/// chitchat's frame: a little-endian magic number, then the protocol version.
const MAGIC_NUMBER: u16 = 45_139;
const PROTOCOL_V0: u8 = 0;

/// chitchat's message types.
const SYN: u8 = 0;
const SYN_ACK: u8 = 1;
const ACK: u8 = 2;

/// A delta's block types.
const NO_MORE_BLOCKS: u8 = 0;
const COMPRESSED_BLOCK: u8 = 1;
const UNCOMPRESSED_BLOCK: u8 = 2;

/// A delta's operation tags.
const OP_NODE: u8 = 0;
const OP_KEY_VALUE: u8 = 1;
const OP_SET_MAX_VERSION: u8 = 2;

/// The most one compressed block may inflate to: chitchat decompresses each into a buffer of
/// this size, so a legitimate block never exceeds it.
const MAX_BLOCK_BYTES: usize = u16::MAX as usize;

/// The most a whole delta may inflate to. chitchat writes messages of at most 64 KiB and
/// blocks of 16 KiB before compression; 4 MiB allows a compression ratio of 64, far beyond
/// what gossip's key-values reach, and bounds what one message can make the node allocate.
pub const MAX_DELTA_BYTES: usize = 4 << 20;

/// The most operations one delta may hold. chitchat decodes every operation into a 64-byte
/// value before applying any, so 4 MiB of 9-byte operations would cost some 30 MiB. A
/// legitimate 64 KiB message holds a few thousand key-values; this leaves a wide margin.
pub const MAX_DELTA_OPERATIONS: usize = 65_536;

/// Why a message was refused before decoding.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Refused {
    #[error("the message ends in the middle of {0}")]
    Truncated(&'static str),
    #[error("the delta inflates to more than {MAX_DELTA_BYTES} bytes")]
    DeltaTooLarge,
    #[error(
        "a compressed block of the delta does not inflate within {MAX_BLOCK_BYTES} bytes: {0}"
    )]
    BadCompressedBlock(String),
    #[error("unknown block type {0} in the delta")]
    UnknownBlockType(u8),
    #[error("the delta holds more than {MAX_DELTA_OPERATIONS} operations")]
    TooManyOperations,
    #[error("unknown operation tag {0} in the delta")]
    UnknownOperation(u8),
    #[error("the delta for node {node:?} sets max version {set} below its key-value version {key_value}")]
    MaxVersionBelowKeyValue {
        node: String,
        set: u64,
        key_value: u64,
    },
}

/// Refuses `message` if decoding or applying it could make chitchat allocate without bound or
/// panic. Messages that are not chitchat's at all are left to chitchat's own decoder.
pub fn check(message: &[u8]) -> Result<(), Refused> {
    let mut reader = Reader(message);
    let (Ok(magic), Ok(version), Ok(kind)) = (
        reader.u16("the header"),
        reader.u8("the header"),
        reader.u8("the header"),
    ) else {
        return Ok(());
    };
    if magic != MAGIC_NUMBER || version != PROTOCOL_V0 {
        return Ok(());
    }
    match kind {
        SYN_ACK => {
            reader.skip_digest()?;
            check_delta(&mut reader)
        }
        ACK => check_delta(&mut reader),
        // A Syn carries a digest only (bounded by the message's size).
        SYN => Ok(()),
        // BadCluster carries nothing; anything else chitchat refuses itself.
        _ => Ok(()),
    }
}

/// Inflates the delta's blocks with caps, then checks its operations.
fn check_delta(reader: &mut Reader<'_>) -> Result<(), Refused> {
    let mut inflated = Vec::new();
    loop {
        match reader.u8("a block type")? {
            NO_MORE_BLOCKS => break,
            COMPRESSED_BLOCK => {
                let len = reader.u16("a block length")? as usize;
                let compressed = reader.take(len, "a compressed block")?;
                inflate_block(compressed, &mut inflated)?;
            }
            UNCOMPRESSED_BLOCK => {
                let len = reader.u16("a block length")? as usize;
                append_capped(&mut inflated, reader.take(len, "an uncompressed block")?)?;
            }
            other => return Err(Refused::UnknownBlockType(other)),
        }
    }
    check_operations(&inflated)
}

thread_local! {
    /// A zstd decompressor and a block buffer per thread, made on first use and reused:
    /// making them for every message cost more than the rest of the check.
    static INFLATER: RefCell<Option<(zstd::bulk::Decompressor<'static>, Vec<u8>)>> =
        const { RefCell::new(None) };
}

/// Inflates one compressed block (at most [`MAX_BLOCK_BYTES`]) onto `inflated`.
fn inflate_block(compressed: &[u8], inflated: &mut Vec<u8>) -> Result<(), Refused> {
    INFLATER.with_borrow_mut(|slot| {
        let (decompressor, block) = match slot {
            Some(inflater) => inflater,
            // Making a decompressor only fails when zstd cannot allocate its context.
            None => {
                let decompressor = zstd::bulk::Decompressor::new()
                    .map_err(|e| Refused::BadCompressedBlock(e.to_string()))?;
                slot.insert((decompressor, vec![0u8; MAX_BLOCK_BYTES]))
            }
        };
        let n = decompressor
            .decompress_to_buffer(compressed, &mut block[..])
            .map_err(|e| Refused::BadCompressedBlock(e.to_string()))?;
        append_capped(inflated, &block[..n])
    })
}

fn append_capped(inflated: &mut Vec<u8>, bytes: &[u8]) -> Result<(), Refused> {
    if inflated.len() + bytes.len() > MAX_DELTA_BYTES {
        return Err(Refused::DeltaTooLarge);
    }
    inflated.extend_from_slice(bytes);
    Ok(())
}

/// Within one node's part of a delta, the max version a "set max version" operation sets must
/// not fall below a key-value version that came before it (the invariant chitchat asserts).
fn check_operations(ops: &[u8]) -> Result<(), Refused> {
    let mut reader = Reader(ops);
    let mut node = String::new();
    let mut highest_key_value = 0u64;
    let mut operations = 0usize;
    while !reader.0.is_empty() {
        operations += 1;
        if operations > MAX_DELTA_OPERATIONS {
            return Err(Refused::TooManyOperations);
        }
        match reader.u8("an operation tag")? {
            OP_NODE => {
                node = reader.chitchat_id()?.node_id.to_string();
                highest_key_value = 0;
                reader.u64("a node operation")?; // last GC version
                reader.u64("a node operation")?; // from version (excluded)
            }
            OP_KEY_VALUE => {
                reader.string("a key")?;
                reader.string("a value")?;
                highest_key_value = highest_key_value.max(reader.u64("a key-value version")?);
                reader.u8("a key-value status")?;
            }
            OP_SET_MAX_VERSION => {
                let set = reader.u64("a max version")?;
                if set < highest_key_value {
                    return Err(Refused::MaxVersionBelowKeyValue {
                        node: node.chars().take(64).collect(),
                        set,
                        key_value: highest_key_value,
                    });
                }
            }
            other => return Err(Refused::UnknownOperation(other)),
        }
    }
    Ok(())
}

/// A cursor over chitchat's little-endian encoding.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Refused> {
        if self.0.len() < n {
            return Err(Refused::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, Refused> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Refused> {
        let bytes = self.take(2, what)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, Refused> {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(bytes))
    }

    /// A string: its length as a u16, then its bytes (chitchat checks the UTF-8).
    fn string(&mut self, what: &'static str) -> Result<&'a [u8], Refused> {
        let len = self.u16(what)? as usize;
        self.take(len, what)
    }

    fn chitchat_id(&mut self) -> Result<ChitchatId, Refused> {
        let mut rest = self.0;
        let id = ChitchatId::deserialize(&mut rest).map_err(|_| Refused::Truncated("a node id"))?;
        self.0 = rest;
        Ok(id)
    }

    /// A digest: a u16 count of (node id, heartbeat, last GC version, max version).
    fn skip_digest(&mut self) -> Result<(), Refused> {
        let nodes = self.u16("a digest")?;
        for _ in 0..nodes {
            self.chitchat_id()?;
            self.take(24, "a digest")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chitchat::{ChitchatMessage, Serializable};
    use std::net::SocketAddr;

    fn endpoint(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 9091))
    }

    fn header(kind: u8) -> Vec<u8> {
        let mut m = MAGIC_NUMBER.to_le_bytes().to_vec();
        m.extend([PROTOCOL_V0, kind]);
        m
    }

    fn node_op(name: &str) -> Vec<u8> {
        let mut op = vec![OP_NODE];
        ChitchatId::new(name.to_string(), 1, endpoint(9)).serialize(&mut op);
        op.extend(0u64.to_le_bytes());
        op.extend(0u64.to_le_bytes());
        op
    }

    fn key_value_op(key: &str, version: u64) -> Vec<u8> {
        let mut op = vec![OP_KEY_VALUE];
        key.serialize(&mut op);
        "v".serialize(&mut op);
        op.extend(version.to_le_bytes());
        op.push(0);
        op
    }

    fn set_max_op(version: u64) -> Vec<u8> {
        let mut op = vec![OP_SET_MAX_VERSION];
        op.extend(version.to_le_bytes());
        op
    }

    fn ack_of(ops: &[u8]) -> Vec<u8> {
        let mut m = header(ACK);
        m.push(UNCOMPRESSED_BLOCK);
        m.extend(u16::try_from(ops.len()).unwrap().to_le_bytes());
        m.extend(ops);
        m.push(NO_MORE_BLOCKS);
        m
    }

    #[test]
    fn well_formed_deltas_pass_and_decode() {
        let ops = [
            node_op("a"),
            key_value_op("k1", 3),
            key_value_op("k2", 5),
            set_max_op(9),
            node_op("b"),
            set_max_op(2),
        ]
        .concat();
        let ack = ack_of(&ops);
        assert_eq!(check(&ack), Ok(()));
        assert!(ChitchatMessage::deserialize(&mut &ack[..]).is_ok());
    }

    #[test]
    fn a_max_version_below_a_key_value_is_refused() {
        let ops = [node_op("a"), key_value_op("k", 2_000), set_max_op(1_000)].concat();
        let ack = ack_of(&ops);
        // chitchat itself decodes it (and would later panic applying it).
        assert!(ChitchatMessage::deserialize(&mut &ack[..]).is_ok());
        assert_eq!(
            check(&ack),
            Err(Refused::MaxVersionBelowKeyValue {
                node: "a".to_string(),
                set: 1_000,
                key_value: 2_000
            })
        );
    }

    #[test]
    fn the_bound_resets_for_each_node() {
        let ops = [
            node_op("a"),
            key_value_op("k", 50),
            node_op("b"),
            set_max_op(1),
        ]
        .concat();
        assert_eq!(check(&ack_of(&ops)), Ok(()));
    }

    #[test]
    fn many_small_blocks_that_inflate_past_the_cap_are_refused() {
        let zeros = vec![0u8; MAX_BLOCK_BYTES];
        let frame = zstd::bulk::compress(&zeros, 19).unwrap();
        assert!(
            frame.len() < 64,
            "a run of zeros compresses to {} bytes",
            frame.len()
        );
        let mut m = header(ACK);
        let blocks = MAX_DELTA_BYTES / MAX_BLOCK_BYTES + 1;
        for _ in 0..blocks {
            m.push(COMPRESSED_BLOCK);
            m.extend(u16::try_from(frame.len()).unwrap().to_le_bytes());
            m.extend(&frame);
        }
        m.push(NO_MORE_BLOCKS);
        assert!(m.len() < 16 * 1024);
        assert_eq!(check(&m), Err(Refused::DeltaTooLarge));
    }

    #[test]
    fn too_many_operations_are_refused() {
        let mut ops = node_op("a");
        for _ in 0..MAX_DELTA_OPERATIONS {
            ops.extend(set_max_op(1));
        }
        let mut m = header(ACK);
        for chunk in ops.chunks(u16::MAX as usize) {
            m.push(UNCOMPRESSED_BLOCK);
            m.extend(u16::try_from(chunk.len()).unwrap().to_le_bytes());
            m.extend(chunk);
        }
        m.push(NO_MORE_BLOCKS);
        assert_eq!(check(&m), Err(Refused::TooManyOperations));
    }

    #[test]
    fn a_block_that_inflates_past_one_block_is_refused() {
        let frame = zstd::bulk::compress(&vec![7u8; MAX_BLOCK_BYTES + 1], 3).unwrap();
        let mut m = header(ACK);
        m.push(COMPRESSED_BLOCK);
        m.extend(u16::try_from(frame.len()).unwrap().to_le_bytes());
        m.extend(&frame);
        m.push(NO_MORE_BLOCKS);
        assert!(matches!(check(&m), Err(Refused::BadCompressedBlock(_))));
    }

    #[test]
    fn a_syn_ack_digest_is_skipped_to_reach_its_delta() {
        let mut m = header(SYN_ACK);
        m.extend(2u16.to_le_bytes());
        for name in ["a", "b"] {
            ChitchatId::new(name.to_string(), 7, endpoint(3)).serialize(&mut m);
            m.extend([0u8; 24]);
        }
        let ops = [node_op("a"), key_value_op("k", 9), set_max_op(8)].concat();
        m.extend(&ack_of(&ops)[4..]);
        assert!(ChitchatMessage::deserialize(&mut &m[..]).is_ok());
        assert!(matches!(
            check(&m),
            Err(Refused::MaxVersionBelowKeyValue { set: 8, .. })
        ));
    }

    #[test]
    fn truncated_and_foreign_messages_never_panic() {
        let ops = [node_op("a"), key_value_op("k", 9), set_max_op(10)].concat();
        let ack = ack_of(&ops);
        for len in 0..ack.len() {
            let _ = check(&ack[..len]);
        }
        assert_eq!(check(b"not chitchat at all"), Ok(()));
        assert_eq!(check(&[]), Ok(()));
    }
}
