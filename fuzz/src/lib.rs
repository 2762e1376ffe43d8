//! The properties the fuzz targets check, shared by the libFuzzer targets (`fuzz_targets/`)
//! and the deterministic fallback loop (`src/bin/fuzz_loop.rs`).
//!
//! A property that does not hold panics, which libFuzzer reports as a crash (and the
//! fallback loop as a failure), with the input saved.

use std::net::SocketAddr;
use std::time::Duration;

pub mod sealed;

pub use sealed::check_sealed;

use bocluster::sql::{parse_statement, ClientSpec, Statement};
use bocluster::membership::engine::Engine;
use bocluster::membership::{packet, MemberId, Record, Timings};
use bocluster::wire::{Request, Response};

/// Longest error message the statement parser may produce, in bytes, whatever the input's
/// size (it is sent back over HTTP). The parser quotes at most 40 characters of input, and
/// refuses values over 256 bytes before naming them "so that error messages never echo huge
/// inputs" (src/sql/parser.rs); a name or host of up to 256 bytes is echoed whole, Debug-escaped
/// (up to 6 characters per byte, `\u{7f}`): 256 x 6 plus the message's own words.
pub const MAX_PARSE_ERROR_LEN: usize = 2048;

/// The stream tags of src/transport/mod.rs (`StreamKind`), which is private there.
const REQUEST_TAG: u8 = 2;

/// Statement parser: on the input as UTF-8 (when it is) and as lossily decoded UTF-8 (what a
/// client that replaces bad bytes would send). Never panics; an error names a line and a
/// column inside the input and has a bounded message; a statement that parses can be written
/// back as text that parses to the same statement.
pub fn check_statement(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_statement_text(text);
    }
    let lossy = String::from_utf8_lossy(data);
    if let std::borrow::Cow::Owned(text) = lossy {
        check_statement_text(&text);
    }
}

/// The checks of [`check_statement`] on one string.
pub fn check_statement_text(input: &str) {
    match parse_statement(input) {
        Ok(statement) => {
            let text = render(&statement);
            match parse_statement(&text) {
                Ok(again) => assert_eq!(
                    again, statement,
                    "{input:?} parsed as {statement:?}; written back as {text:?} it parses as {again:?}"
                ),
                Err(e) => panic!(
                    "{input:?} parsed as {statement:?}; written back as {text:?} it fails: {e}"
                ),
            }
        }
        Err(e) => {
            let lines: Vec<&str> = input.split('\n').collect();
            assert!(
                e.line >= 1 && e.column >= 1,
                "{input:?}: position must be 1-based: {e:?}"
            );
            let line = usize::try_from(e.line).unwrap_or(usize::MAX);
            assert!(
                line <= lines.len(),
                "{input:?}: error on line {} of an input of {} lines: {e}",
                e.line,
                lines.len()
            );
            let width = lines[line - 1].chars().count() as u64;
            assert!(
                e.column <= width + 1,
                "{input:?}: error at column {} of a line of {width} characters: {e}",
                e.column
            );
            assert!(!e.message.is_empty(), "{input:?}: empty error message");
            assert!(
                e.message.len() <= MAX_PARSE_ERROR_LEN,
                "{input:?} ({} bytes): error message of {} bytes: {e}",
                input.len(),
                e.message.len()
            );
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!("line {}, column {}: ", e.line, e.column)),
                "{input:?}: error does not start with its position: {shown:?}"
            );
        }
    }
}

/// A statement as operator text, in the documented syntax.
pub fn render(statement: &Statement) -> String {
    let client = |verb: &str, spec: &ClientSpec| {
        format!(
            "{verb} CLIENT ip=\"{}\" db={} port={}",
            spec.host, spec.db, spec.port
        )
    };
    match statement {
        Statement::CreateDatabase { name } => format!("CREATE DATABASE {name}"),
        Statement::DropDatabase { name } => format!("DROP DATABASE {name}"),
        Statement::ShowDatabases => "SHOW DATABASES".to_string(),
        Statement::ShowNodes => "SHOW NODES".to_string(),
        Statement::ShowCluster => "SHOW CLUSTER".to_string(),
        Statement::AddClient(spec) => client("ADD", spec),
        Statement::DropClient(spec) => client("DROP", spec),
    }
}

/// Node-to-node messages: the input as a postcard [`Request`] and [`Response`], as a stream
/// frame the way src/transport/mod.rs reads one (tag byte, then a request), and as the
/// plaintext of a membership datagram handed to a real membership engine (sans-IO, so it runs
/// here as in a node). Decoding never panics, what decodes re-encodes to bytes that decode to
/// the same value, and the engine never panics on any datagram.
pub fn check_wire(data: &[u8]) {
    check_postcard::<Request>(data);
    check_postcard::<Response>(data);
    if let Some((&REQUEST_TAG, rest)) = data.split_first() {
        check_postcard::<Request>(rest);
    }
    check_membership(data);
    check_sealed_request(data);
}

/// A sealed request or answer's plaintext (`transport::sealed_requests`): never panics, and
/// what decodes encodes back to itself.
fn check_sealed_request(data: &[u8]) {
    use bocluster::seal::MAX_PLAINTEXT;
    use bocluster::transport::sealed_requests::{decode, encode_answer, encode_request, Message};
    match decode(data) {
        Some(Message::Request { id, request }) => {
            // Postcard has one encoding per value, so one that fitted fits again.
            let again = encode_request(id, &request, 0, usize::MAX).expect("encodes");
            assert_eq!(
                decode(&again),
                Some(Message::Request {
                    id,
                    request: request.clone()
                })
            );
            let _ = encode_request(id, &request, MAX_PLAINTEXT, MAX_PLAINTEXT);
        }
        Some(Message::Answer { id, answer }) => {
            let again = encode_answer(id, &answer);
            assert_eq!(decode(&again), Some(Message::Answer { id, answer }));
        }
        None => {}
    }
}

/// One datagram into a fresh engine, then its timers: nothing may panic, and what the engine
/// sends back to an unknown source is never bigger than what it received.
fn check_membership(data: &[u8]) {
    let _ = packet::decode(data);
    let me = MemberId::new("fuzz", 1, ([127, 0, 0, 1], 9091).into());
    let mut engine = Engine::new(me, Record::default(), Timings::default(), 1, Duration::ZERO);
    let _ = engine.take_output();
    let from: SocketAddr = ([127, 0, 0, 2], 9091).into();
    let _ = engine.handle_datagram(Duration::from_millis(1), from, None, data);
    let answered = engine.take_output().datagram_bytes();
    assert!(
        answered <= data.len(),
        "answered {answered} bytes to an unknown source that sent {}",
        data.len()
    );
    engine.advance(Duration::from_secs(30));
    let _ = engine.members();
}

fn check_postcard<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(value) = postcard::from_bytes::<T>(data) else {
        return;
    };
    let bytes = postcard::to_allocvec(&value)
        .unwrap_or_else(|e| panic!("{value:?} decoded from {data:?} does not encode: {e}"));
    match postcard::from_bytes::<T>(&bytes) {
        Ok(again) => assert_eq!(
            again, value,
            "{value:?} re-encoded as {bytes:?} decodes as {again:?}"
        ),
        Err(e) => panic!("{value:?} re-encoded as {bytes:?} does not decode: {e}"),
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_inputs_pass() {
        for text in [
            "SHOW NODES",
            "CREATE DATABASE log1;",
            "ADD CLIENT ip=\"::1\" db=x port=19091",
            "DROP CLIENT ip=Edge-1.example db=x",
            "SHOW FOO",
            "",
        ] {
            check_statement(text.as_bytes());
        }
        check_wire(&[REQUEST_TAG, 0, 2, b'n', b'1', 7]);
        check_wire(&[0x53, 0xb0, 0, 3]);
    }

    /// The hello seeds, as the node encodes them now. `FUZZ_WRITE_SEEDS=1 cargo test` writes
    /// them to `seeds/wire_messages/` after a change of the wire format.
    #[test]
    fn hello_seeds_are_current() {
        use bocluster::wire::Introduction;
        let node = Introduction {
            node_id: "edge-1".into(),
            generation: 7,
            endpoint: "192.168.0.3:19091".parse().unwrap(),
            host: "edge".into(),
            databases: vec!["log1".into(), "log2".into()],
        };
        let request = Request::Hello {
            node: node.clone(),
            register: true,
        };
        let seeds = [
            ("request_hello", postcard::to_allocvec(&request).unwrap()),
            (
                "frame_request_hello",
                postcard::to_extend(&request, vec![REQUEST_TAG]).unwrap(),
            ),
            (
                "response_hello",
                postcard::to_allocvec(&Response::Hello { node }).unwrap(),
            ),
        ];
        for (name, bytes) in seeds {
            if std::env::var_os("FUZZ_WRITE_SEEDS").is_some() {
                let path = format!("{}/seeds/wire_messages/{name}", env!("CARGO_MANIFEST_DIR"));
                std::fs::write(&path, &bytes).unwrap();
            }
            assert_eq!(
                seed(name),
                bytes,
                "{name} is stale: rerun with FUZZ_WRITE_SEEDS=1"
            );
        }
    }

    fn seed(name: &str) -> Vec<u8> {
        let path = format!("{}/seeds/wire_messages/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The binary seeds are what they are named after, so the fuzzer starts from valid
    /// messages of every kind.
    #[test]
    fn wire_seeds_decode() {
        let hello = postcard::from_bytes::<Request>(&seed("request_hello")).unwrap();
        assert!(matches!(hello, Request::Hello { .. }));
        for name in ["response_hello", "response_error"] {
            postcard::from_bytes::<Response>(&seed(name)).unwrap();
        }
        let frame = seed("frame_request_hello");
        assert_eq!(frame[0], REQUEST_TAG);
        assert_eq!(postcard::from_bytes::<Request>(&frame[1..]).unwrap(), hello);
        check_wire(&frame);
    }
}
