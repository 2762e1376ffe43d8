//! The MySQL connection phase (the login), done here rather than by `opensrv-mysql`.
//!
//! opensrv-mysql 0.7 refuses a password with error 1698 (MySQL's "no password" error)
//! rather than 1045, and asks a client to switch to `mysql_native_password` only when the
//! client sent no answer at all; a client whose own default is `caching_sha2_password`
//! (MySQL 8's libraries) answers at once in that plugin and would be refused with the right
//! password. So [`login`] greets the client, switches it to `mysql_native_password` when it
//! answered in another plugin, checks the password and sends OK or 1045 itself. Then
//! opensrv takes over the connection as if a client had just sent [`handoff`] (a login with
//! no password), and [`SkipPackets`] drops its greeting and OK, which the client already had.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use opensrv_mysql::{CapabilityFlags, ErrorKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::auth::{self, SALT_LEN};

/// The only plugin this server speaks.
pub const NATIVE_PASSWORD: &str = "mysql_native_password";

/// Larger login packets are refused (real ones are a few hundred bytes).
const MAX_LOGIN_PACKET: usize = 64 * 1024;

/// What the server offers, as opensrv-mysql does (it serves the rest of the connection).
fn server_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_DEPRECATE_EOF
}

/// Why a client's login packet is not one this server can take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("the client's login packet is cut short")]
    Truncated,
    #[error("the client speaks the pre-4.1 protocol; bocluster needs CLIENT_PROTOCOL_41")]
    OldProtocol,
    #[error("the client asked for TLS, which this port does not offer")]
    Tls,
    #[error("the client's login packet is {0} bytes, more than {MAX_LOGIN_PACKET}")]
    TooLarge(usize),
}

impl From<LoginError> for io::Error {
    fn from(e: LoginError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// A client's handshake response: who it is and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub capabilities: CapabilityFlags,
    pub max_packet: u32,
    pub collation: u8,
    pub username: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub plugin: Vec<u8>,
}

/// How a login ended.
#[derive(Debug)]
pub enum Login {
    /// The password is right (or none is required); `seq` numbers the server's next packet.
    Accepted { response: Response, seq: u8 },
    /// A wrong password: the 1045 error was sent.
    Refused { username: String },
}

/// Reads a login packet byte by byte, failing with [`LoginError::Truncated`] at its end.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LoginError> {
        if self.0.len() < n {
            return Err(LoginError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, LoginError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, LoginError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Up to the next NUL (or the end), which is consumed.
    fn c_string(&mut self) -> &'a [u8] {
        let end = self.0.iter().position(|b| *b == 0).unwrap_or(self.0.len());
        let (head, rest) = self.0.split_at(end);
        self.0 = rest.get(1..).unwrap_or_default();
        head
    }

    fn length_encoded(&mut self) -> Result<u64, LoginError> {
        let first = self.u8()?;
        let width = match first {
            0xfc => 2,
            0xfd => 3,
            0xfe => 8,
            n => return Ok(u64::from(n)),
        };
        let bytes = self.take(width)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |n, b| (n << 8) | u64::from(*b)))
    }
}

/// Parses a `HandshakeResponse41`.
pub fn parse_response(payload: &[u8]) -> Result<Response, LoginError> {
    let mut fields = Fields(payload);
    let capabilities = CapabilityFlags::from_bits_truncate(fields.u32()?);
    if !capabilities.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        return Err(LoginError::OldProtocol);
    }
    if capabilities.contains(CapabilityFlags::CLIENT_SSL) {
        return Err(LoginError::Tls);
    }
    let max_packet = fields.u32()?;
    let collation = fields.u8()?;
    fields.take(23)?;
    let username = fields.c_string().to_vec();
    let auth_response =
        if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) {
            let len = fields.length_encoded()?;
            let len = usize::try_from(len).map_err(|_| LoginError::Truncated)?;
            fields.take(len)?.to_vec()
        } else if capabilities.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
            let len = fields.u8()?;
            fields.take(usize::from(len))?.to_vec()
        } else {
            fields.c_string().to_vec()
        };
    let database =
        if capabilities.contains(CapabilityFlags::CLIENT_CONNECT_WITH_DB) && !fields.0.is_empty() {
            Some(String::from_utf8_lossy(fields.c_string()).into_owned())
        } else {
            None
        };
    let plugin = if capabilities.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) {
        fields.c_string().to_vec()
    } else {
        Vec::new()
    };
    Ok(Response {
        capabilities,
        max_packet,
        collation,
        username,
        auth_response,
        database,
        plugin,
    })
}

/// The server's greeting (`HandshakeV10`).
pub fn greeting(version: &str, connection_id: u32, salt: &[u8; SALT_LEN]) -> Vec<u8> {
    let caps = server_capabilities().bits().to_le_bytes();
    let mut p = vec![10];
    p.extend_from_slice(version.as_bytes());
    p.push(0);
    p.extend_from_slice(&connection_id.to_le_bytes());
    p.extend_from_slice(&salt[..8]);
    p.push(0);
    p.extend_from_slice(&caps[..2]);
    p.push(0x21); // utf8_general_ci
    p.extend_from_slice(&[0, 0]); // status flags
    p.extend_from_slice(&caps[2..]);
    p.push((SALT_LEN + 1) as u8);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(&salt[8..]);
    p.push(0);
    p.extend_from_slice(NATIVE_PASSWORD.as_bytes());
    p.push(0);
    p
}

/// An OK packet, shaped for the client's capabilities as opensrv-mysql shapes its own.
pub fn ok_packet(client: CapabilityFlags) -> Vec<u8> {
    let mut p = vec![0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
    if client.contains(CapabilityFlags::CLIENT_SESSION_TRACK) {
        p.push(0x00); // empty info
    }
    p
}

/// An error packet with the SQL state of `kind`.
pub fn error_packet(kind: ErrorKind, message: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&(kind as u16).to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(kind.sqlstate());
    p.extend_from_slice(message.as_bytes());
    p
}

/// The handshake response opensrv-mysql reads once [`login`] is done: the client's user
/// and capabilities, no password, no database (the session already chose it).
pub fn handoff(response: &Response) -> Vec<u8> {
    let capabilities = (response.capabilities
        - CapabilityFlags::CLIENT_CONNECT_WITH_DB
        - CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        - CapabilityFlags::CLIENT_CONNECT_ATTRS)
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH;
    let mut p = Vec::new();
    p.extend_from_slice(&capabilities.bits().to_le_bytes());
    p.extend_from_slice(&response.max_packet.to_le_bytes());
    p.push(response.collation);
    p.extend_from_slice(&[0; 23]);
    p.extend(response.username.iter().copied().filter(|b| *b != 0));
    p.push(0);
    p.push(0); // no auth response
    p.extend_from_slice(NATIVE_PASSWORD.as_bytes());
    p.push(0);
    framed(1, &p)
}

/// `payload` as one packet: 3-byte length, sequence number, payload.
pub fn framed(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

pub async fn write_packet<W: AsyncWrite + Unpin>(
    writer: &mut W,
    seq: u8,
    payload: &[u8],
) -> io::Result<()> {
    writer.write_all(&framed(seq, payload)).await?;
    writer.flush().await
}

async fn read_packet<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 4];
    reader.read_exact(&mut header).await?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if len > MAX_LOGIN_PACKET {
        return Err(LoginError::TooLarge(len).into());
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    Ok((header[3], payload))
}

/// Greets the client and checks its password against `password` (`SHA1(SHA1(token))`; any
/// password passes when `None`).
pub async fn login<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut R,
    writer: &mut W,
    version: &str,
    connection_id: u32,
    salt: &[u8; SALT_LEN],
    password: Option<&[u8; SALT_LEN]>,
) -> io::Result<Login> {
    write_packet(writer, 0, &greeting(version, connection_id, salt)).await?;
    let (seq, payload) = read_packet(reader).await?;
    let response = parse_response(&payload)?;
    let mut seq = seq.wrapping_add(1);
    let Some(stored) = password else {
        return Ok(Login::Accepted { response, seq });
    };
    let mut answer = response.auth_response.clone();
    if !response.plugin.is_empty() && response.plugin != NATIVE_PASSWORD.as_bytes() {
        // Auth switch: the same salt, in the plugin this server checks.
        let mut switch = vec![0xfe];
        switch.extend_from_slice(NATIVE_PASSWORD.as_bytes());
        switch.push(0);
        switch.extend_from_slice(salt);
        switch.push(0);
        write_packet(writer, seq, &switch).await?;
        let (next, switched) = read_packet(reader).await?;
        answer = switched;
        seq = next.wrapping_add(1);
    }
    let username = String::from_utf8_lossy(&response.username).into_owned();
    if auth::verify(stored, salt, &answer) {
        return Ok(Login::Accepted { response, seq });
    }
    let message = format!(
        "Access denied for user '{username}' (using password: {}): the password must be this node's API token (BO_API_TOKEN)",
        if answer.is_empty() { "NO" } else { "YES" }
    );
    write_packet(
        writer,
        seq,
        &error_packet(ErrorKind::ER_ACCESS_DENIED_ERROR, &message),
    )
    .await?;
    Ok(Login::Refused { username })
}

/// A writer that drops the first `packets` whole MySQL packets written to it, then passes
/// everything through: opensrv-mysql's greeting and OK after [`handoff`].
pub struct SkipPackets<W> {
    inner: W,
    packets: usize,
    header: [u8; 4],
    header_len: usize,
    body_left: usize,
}

impl<W> SkipPackets<W> {
    pub fn new(inner: W, packets: usize) -> Self {
        SkipPackets {
            inner,
            packets,
            header: [0; 4],
            header_len: 0,
            body_left: 0,
        }
    }

    /// Consumes what of `buf` belongs to skipped packets; how many bytes that was.
    fn skip(&mut self, buf: &[u8]) -> usize {
        let mut used = 0;
        while self.packets > 0 && used < buf.len() {
            if self.header_len < 4 {
                self.header[self.header_len] = buf[used];
                self.header_len += 1;
                used += 1;
                if self.header_len == 4 {
                    let h = self.header;
                    self.body_left =
                        usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
                }
            } else {
                let n = self.body_left.min(buf.len() - used);
                self.body_left -= n;
                used += n;
            }
            if self.header_len == 4 && self.body_left == 0 {
                self.packets -= 1;
                self.header_len = 0;
            }
        }
        used
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for SkipPackets<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let skipped = self.skip(buf);
        if skipped > 0 {
            return Poll::Ready(Ok(skipped));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handshake response as a client sends it.
    fn client_response(plugin: &str, answer: &[u8], database: Option<&str>) -> Vec<u8> {
        let mut caps = CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;
        if database.is_some() {
            caps |= CapabilityFlags::CLIENT_CONNECT_WITH_DB;
        }
        let mut p = caps.bits().to_le_bytes().to_vec();
        p.extend_from_slice(&(1u32 << 24).to_le_bytes());
        p.push(0x21);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(b"alice\0");
        p.push(answer.len() as u8);
        p.extend_from_slice(answer);
        if let Some(db) = database {
            p.extend_from_slice(db.as_bytes());
            p.push(0);
        }
        p.extend_from_slice(plugin.as_bytes());
        p.push(0);
        p
    }

    #[test]
    fn responses_are_parsed_and_bad_ones_refused() {
        let r = parse_response(&client_response(NATIVE_PASSWORD, &[7; 20], Some("sales"))).unwrap();
        assert_eq!(r.username, b"alice");
        assert_eq!(r.auth_response, vec![7; 20]);
        assert_eq!(r.database.as_deref(), Some("sales"));
        assert_eq!(r.plugin, NATIVE_PASSWORD.as_bytes());
        let full = client_response("caching_sha2_password", &[1; 32], None);
        for cut in [0, 3, 10, 31] {
            assert_eq!(
                parse_response(&full[..cut]),
                Err(LoginError::Truncated),
                "{cut}"
            );
        }
        let old = [0u8; 40];
        assert_eq!(parse_response(&old), Err(LoginError::OldProtocol));
    }

    /// Runs [`login`] against a scripted client: its packets in, the server's out.
    async fn run_login(client: &[Vec<u8>], password: Option<&str>) -> (Login, Vec<u8>) {
        let salt = *b"0123456789abcdefghij";
        let stored = password.map(|p| auth::stored_hash(p.as_bytes()));
        let input: Vec<u8> = client
            .iter()
            .enumerate()
            .flat_map(|(i, p)| framed(1 + 2 * i as u8, p))
            .collect();
        let mut reader = input.as_slice();
        let mut out = Vec::new();
        let login = login(&mut reader, &mut out, "v", 1, &salt, stored.as_ref())
            .await
            .unwrap();
        (login, out)
    }

    #[tokio::test]
    async fn the_token_is_the_password_and_other_plugins_are_switched() {
        let salt = *b"0123456789abcdefghij";
        let right = auth::client_answer(b"tok", &salt).to_vec();
        let (login, _) = run_login(
            &[client_response(NATIVE_PASSWORD, &right, None)],
            Some("tok"),
        )
        .await;
        assert!(matches!(login, Login::Accepted { seq: 2, .. }), "{login:?}");

        let wrong = auth::client_answer(b"nope", &salt).to_vec();
        let (login, out) = run_login(
            &[client_response(NATIVE_PASSWORD, &wrong, None)],
            Some("tok"),
        )
        .await;
        assert!(matches!(login, Login::Refused { .. }), "{login:?}");
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("#28000Access denied for user 'alice' (using password: YES)"),
            "{text}"
        );
        let err = out.windows(3).position(|w| w == [0xff, 0x15, 0x04]);
        assert!(err.is_some(), "no 1045 error packet: {out:?}");

        // A caching_sha2_password client is switched, then answers in mysql_native_password.
        let (login, out) = run_login(
            &[
                client_response("caching_sha2_password", &[9; 32], None),
                right.clone(),
            ],
            Some("tok"),
        )
        .await;
        assert!(matches!(login, Login::Accepted { seq: 4, .. }), "{login:?}");
        assert!(out.windows(22).any(|w| w == b"\xfemysql_native_password"));

        // No token: anything passes, with no switch.
        let (login, _) = run_login(
            &[client_response("caching_sha2_password", &[9; 32], None)],
            None,
        )
        .await;
        assert!(matches!(login, Login::Accepted { seq: 2, .. }), "{login:?}");
    }

    #[test]
    fn skipped_packets_end_exactly_at_their_end() {
        let mut skip = SkipPackets::new(Vec::<u8>::new(), 2);
        let mut bytes = framed(0, b"greeting");
        bytes.extend(framed(2, b"ok"));
        bytes.extend(framed(0, b"kept"));
        // Fed in small pieces, as a writer may be.
        let mut passed = Vec::new();
        for chunk in bytes.chunks(3) {
            let used = skip.skip(chunk);
            passed.extend_from_slice(&chunk[used..]);
        }
        assert_eq!(passed, framed(0, b"kept"));
    }
}
