//! Property-based fuzzing (proptest; cargo-fuzz needs a nightly toolchain)
//! of every place where arbitrary input meets Wharf: close codes and reasons
//! given to `close()`, request heads and query strings from the network,
//! configuration values, and bytes and frames after the upgrade.
//!
//! Everything goes through a real server on 127.0.0.1, one per test where
//! possible. The server must answer with a well-formed HTTP status or
//! upgrade, end a broken connection with one Close frame carrying a valid
//! code (or keep serving a valid one), and never panic: after each test every
//! connection that ran its connect handler has run its close handler, no
//! panic was raised outside the tests, and a fresh client is served.
//!
//! Case counts are small, so the whole file runs in seconds in a debug
//! build; multiply them for a longer hunt with `FUZZ_CASES_FACTOR=N`.

use std::cell::RefCell;
use std::fmt::Debug;
use std::net::Shutdown;
use std::time::Duration;

use async_std::channel::{unbounded, Receiver, Sender};
use async_std::io::{ReadExt, WriteExt};
use async_std::net::TcpStream;
use async_std::task::block_on;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use wharf::{
    CloseCode, CloseOutcome, Conn, ConnectRate, Error, Handle, Handler, Initiator, Message, Server,
    MAX_REASON_BYTES,
};
use wharf_test_support::*;

// ---- running properties ----

/// Checks `property` on `cases` values from `strategy` (times
/// `FUZZ_CASES_FACTOR`), shrinking a failure to a minimal input. Failures are
/// not persisted to files: the minimal input is in the panic message.
fn check<S>(cases: u32, strategy: S, property: impl Fn(S::Value))
where
    S: Strategy,
    S::Value: Debug,
{
    let factor = std::env::var("FUZZ_CASES_FACTOR")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or(1u32);
    let config = ProptestConfig {
        cases: cases * factor,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    if let Err(err) = runner.run(&strategy, |value| {
        property(value);
        Ok(())
    }) {
        panic!("{err}");
    }
}

/// The checks every test ends with: no connection is left without its close
/// handler, nothing panicked outside the tests, a fresh client is served.
async fn assert_healthy(server: &TestServer, recorded: &Recorded, path: &str) {
    recorded.assert_all_closed().await;
    assert_no_server_panic();
    assert_serves_fresh_client(server, path).await;
    recorded.assert_all_closed().await;
    assert_no_server_panic();
}

/// Starts `server` with a recording echo on `/`.
async fn echo_server(server: Server) -> (TestServer, Recorded) {
    install_panic_detector();
    let (echo, recorded) = recording_echo();
    (start(server.route("/", echo)).await, recorded)
}

/// Upgrades a raw peer on `path` and finds its connection's handle (by the
/// peer's address, so a connection left over from a failed case is never
/// mistaken for it).
async fn raw_connection(server: &TestServer, recorded: &Recorded, path: &str) -> (RawPeer, Handle) {
    let peer = RawPeer::connect(server, path).await;
    let local = peer.stream.local_addr().expect("local addr");
    loop {
        let id = recorded.next_opened().await;
        if let Some(handle) = server.registry.get(id) {
            if handle.peer_addr() == local {
                return (peer, handle);
            }
        }
    }
}

// ---- close codes and reasons ----

#[test]
fn sendable_close_codes_are_exactly_those_of_rfc_6455() {
    for code in 0..=u16::MAX {
        let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
        let close_code = CloseCode::from(code);
        assert_eq!(close_code.is_sendable(), expected, "code {code}");
        assert_eq!(u16::from(close_code), code);
        assert_eq!(close_code.as_u16(), code);
    }
}

/// Codes with the interesting boundaries over-represented.
fn close_code() -> impl Strategy<Value = u16> {
    prop_oneof![
        2 => any::<u16>(),
        3 => prop::sample::select(vec![
            0u16, 999, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1011, 1012, 1013,
            1014, 1015, 1016, 2999, 3000, 3999, 4000, 4999, 5000, 65535,
        ]),
        1 => 995u16..=1020,
        1 => 2995u16..=3005,
        1 => 3995u16..=4005,
        1 => 4995u16..=5005,
    ]
}

/// Reasons around the 123-byte limit, with multi-byte characters that
/// straddle it.
fn close_reason() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        any::<char>(),
        prop::sample::select(vec!['a', 'é', '€', '🦀', '\0']),
    ];
    (0usize..=125, vec(ch, 0..40)).prop_map(|(ascii, tail)| {
        let mut reason = "r".repeat(ascii);
        reason.extend(tail);
        reason
    })
}

/// `sent` is the longest prefix of `given` that fits in a Close frame, cut
/// on a character boundary.
fn assert_fitted(sent: &str, given: &str) {
    assert!(sent.len() <= MAX_REASON_BYTES, "{} bytes sent", sent.len());
    assert!(
        given.starts_with(sent),
        "{sent:?} is not a prefix of {given:?}"
    );
    if let Some(next) = given[sent.len()..].chars().next() {
        assert!(
            sent.len() + next.len_utf8() > MAX_REASON_BYTES,
            "cut too short: {} bytes kept of {given:?}",
            sent.len()
        );
    }
}

/// `close()` with any code and reason, on a live connection: an unsendable
/// code is refused with `InvalidCloseCode` and nothing reaches the wire (the
/// connection stays open and answers a ping); a sendable one puts exactly
/// that code on the wire with the reason fitted to 123 bytes.
#[test]
fn close_with_any_code_and_reason() {
    let (server, recorded) = block_on(echo_server(Server::new()));
    let open: RefCell<Option<(RawPeer, Handle)>> = RefCell::new(None);
    check(256, (close_code(), close_reason()), |(code, reason)| {
        block_on(async {
            let taken = open.take();
            let (mut peer, handle) = match taken {
                Some(open) => open,
                None => raw_connection(&server, &recorded, "/").await,
            };
            if !CloseCode::from(code).is_sendable() {
                match within("refused close", handle.close(code, &reason)).await {
                    Err(Error::InvalidCloseCode(c)) => assert_eq!(c, code),
                    other => panic!("close({code}) gave {other:?}"),
                }
                assert!(handle.is_open(), "a refused close must not close");
                peer.send_frame(OP_PING, true, b"still open?").await;
                let frame = peer.read_frame().await.expect("the pong");
                assert_eq!(
                    (frame.opcode, frame.payload.as_slice()),
                    (OP_PONG, &b"still open?"[..]),
                    "something came before the pong"
                );
                open.replace(Some((peer, handle)));
                return;
            }
            let closing = {
                let (handle, reason) = (handle.clone(), reason.clone());
                async_std::task::spawn(async move { handle.close(code, &reason).await })
            };
            let frame = peer.read_frame().await.expect("a Close frame");
            assert_eq!(frame.opcode, OP_CLOSE, "{frame:?}");
            assert!(frame.payload.len() >= 2, "{frame:?}");
            assert_eq!(
                u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
                code
            );
            let sent = std::str::from_utf8(&frame.payload[2..]).expect("a UTF-8 reason");
            assert_fitted(sent, &reason);
            peer.send_close(1000, b"").await;
            peer.expect_eof().await;
            let outcome = within("close()", closing).await;
            assert!(matches!(outcome, Ok(CloseOutcome::Clean)), "{outcome:?}");
            let closed = recorded.closed_of(handle.id()).await;
            assert_eq!(closed.code.as_u16(), code);
            assert_eq!(closed.reason, sent);
            assert_eq!(closed.initiator, Initiator::Server);
        })
    });
    block_on(async {
        if let Some((mut peer, handle)) = open.take() {
            let closing = async_std::task::spawn(async move { handle.close(1000, "").await });
            assert_eq!(peer.read_until_close().await.code, Some(1000));
            peer.send_close(1000, b"").await;
            peer.expect_eof().await;
            assert!(matches!(
                within("close()", closing).await,
                Ok(CloseOutcome::Clean)
            ));
        }
        assert_healthy(&server, &recorded, "/").await;
    });
}

// ---- request heads ----

const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(200);
const ACCEPT_OF_SAMPLE_KEY: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// `/ws` echoes, `/page` is a page; nothing else is served.
async fn head_server() -> (TestServer, Recorded) {
    install_panic_detector();
    let (echo, recorded) = recording_echo();
    let server = start(
        Server::new()
            .upgrade_timeout(HANDSHAKE_TIMEOUT)
            .route("/ws", echo)
            .page("/page", "text/plain", "page"),
    )
    .await;
    (server, recorded)
}

/// Connects to `server` and writes `bytes`.
async fn send_request(server: &TestServer, bytes: &[u8]) -> TcpStream {
    let mut stream = within("connect", TcpStream::connect(server.addr))
        .await
        .expect("tcp connect");
    within("write", stream.write_all(bytes))
        .await
        .expect("write");
    stream
}

/// Checks a complete non-101 response: a status line, header lines, a
/// `Content-Length` that matches the body (unless it answers a HEAD), and
/// `Connection: close`. Returns the status.
fn assert_well_formed(response: &str, head_request: bool) -> u16 {
    let status = http_status(response).unwrap_or_else(|| panic!("bad status line: {response:?}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("incomplete response: {response:?}"));
    let mut length = None;
    let mut closes = false;
    for line in head.split("\r\n").skip(1) {
        let (name, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("bad header line {line:?} in {response:?}"));
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .expect("numeric Content-Length"),
            );
        }
        if name.eq_ignore_ascii_case("connection") {
            closes |= value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"));
        }
    }
    if status != 101 {
        if !head_request {
            assert_eq!(length, Some(body.len()), "Content-Length in {response:?}");
        }
        assert!(
            closes,
            "a final answer says Connection: close: {response:?}"
        );
    }
    status
}

/// How `httparse` (the server's parser) sees a request head.
#[derive(Debug, PartialEq)]
enum Parse {
    Partial,
    Complete,
    Error,
}

fn parse(bytes: &[u8]) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    match httparse::Request::new(&mut headers).parse(bytes) {
        Ok(httparse::Status::Partial) => Parse::Partial,
        Ok(httparse::Status::Complete(_)) => Parse::Complete,
        Err(_) => Parse::Error,
    }
}

/// Statuses the server may answer a request with, upgrade included.
const STATUSES: [u16; 7] = [101, 200, 400, 404, 405, 426, 431];

/// Arbitrary bytes, then the end of the client's stream: an incomplete head
/// gets no answer, anything else a well-formed one; never a hang.
#[test]
fn arbitrary_bytes_as_a_request() {
    let (server, recorded) = block_on(head_server());
    let bytes = prop_oneof![
        vec(any::<u8>(), 0..600),
        // Printable, with the separators HTTP cares about.
        vec(
            prop_oneof![
                4 => 0x20u8..0x7f,
                1 => prop::sample::select(b"\r\n:/? \t".to_vec()),
            ],
            0..400,
        ),
    ];
    check(256, bytes, |bytes| {
        block_on(async {
            let mut stream = send_request(&server, &bytes).await;
            stream.shutdown(Shutdown::Write).expect("shutdown");
            let mut out = Vec::new();
            let _ = within("the answer", stream.read_to_end(&mut out)).await;
            let response = String::from_utf8_lossy(&out);
            let parsed = parse(&bytes);
            if response.is_empty() {
                assert_eq!(parsed, Parse::Partial, "no answer to a complete head");
                return;
            }
            assert_ne!(parsed, Parse::Partial, "an answer to an incomplete head");
            let status = assert_well_formed(&response, false);
            assert!(STATUSES.contains(&status), "status {status}");
            if parsed == Parse::Error {
                assert!(
                    matches!(status, 400 | 431),
                    "status {status} for a bad head"
                );
            }
        })
    });
    block_on(async {
        assert_healthy(&server, &recorded, "/ws").await;
    });
}

/// The required upgrade headers, each present with a valid value, missing,
/// or present with an invalid one.
fn required_headers() -> impl Strategy<Value = Vec<(&'static str, Option<(String, bool)>)>> {
    fn header(
        valid: &'static [&'static str],
        invalid: BoxedStrategy<String>,
    ) -> BoxedStrategy<Option<(String, bool)>> {
        prop_oneof![
            8 => prop::sample::select(valid).prop_map(|v| Some((v.to_owned(), true))),
            1 => Just(None),
            1 => invalid.prop_map(|v| Some((v, false))),
        ]
        .boxed()
    }
    let names = [
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
    ];
    (
        // Any Host value is valid; only its absence is not.
        header(
            &["127.0.0.1", "example.com:80"],
            Just(String::new()).boxed(),
        )
        .prop_map(|h| h.map(|(v, _)| (v, true))),
        header(
            &["websocket", "WebSocket", "h2c, websocket"],
            prop::sample::select(vec!["h2c", "web socket", ""])
                .prop_map(str::to_owned)
                .boxed(),
        ),
        header(
            &["Upgrade", "keep-alive, Upgrade", "upgrade"],
            prop::sample::select(vec!["keep-alive", "close", ""])
                .prop_map(str::to_owned)
                .boxed(),
        ),
        header(
            &["dGhlIHNhbXBsZSBub25jZQ=="],
            // Never 24 bytes long: never a valid key.
            prop_oneof!["[A-Za-z0-9+/=]{0,23}", "[A-Za-z0-9+/=]{25,30}"].boxed(),
        ),
        header(
            &["13"],
            prop::sample::select(vec!["8", "12", "14", "13, 8", ""])
                .prop_map(str::to_owned)
                .boxed(),
        ),
    )
        .prop_map(move |(a, b, c, d, e)| names.into_iter().zip([a, b, c, d, e]).collect())
}

/// A request head built from parts, so the right answer is known.
#[derive(Debug, Clone)]
struct RequestHead {
    method: String,
    path: String,
    query: Option<String>,
    version: &'static str,
    required: Vec<(&'static str, Option<(String, bool)>)>,
    extra: Vec<(String, String)>,
    /// Send only this many bytes, and keep the stream open.
    truncate: Option<usize>,
}

impl RequestHead {
    fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {}", self.method, self.path);
        if let Some(query) = &self.query {
            out.push('?');
            out.push_str(query);
        }
        out.push_str(&format!(" {}\r\n", self.version));
        for (name, value) in &self.required {
            if let Some((value, _)) = value {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        for (name, value) in &self.extra {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if let Some(len) = self.truncate {
            bytes.truncate(len % bytes.len().max(1));
        }
        bytes
    }

    /// The statuses the server may answer with.
    fn expected(&self) -> &'static [u16] {
        if self.version == "HTTP/2.0" {
            return &[400];
        }
        let upgrade = self.method == "GET"
            && self.version == "HTTP/1.1"
            && self
                .required
                .iter()
                .all(|(_, v)| matches!(v, Some((_, true))));
        match self.path.as_str() {
            "/ws" if upgrade => &[101],
            "/ws" => &[400, 405, 426],
            "/page" if matches!(self.method.as_str(), "GET" | "HEAD") => &[200],
            "/page" => &[405],
            _ => &[404],
        }
    }
}

fn request_head() -> impl Strategy<Value = RequestHead> {
    (
        prop_oneof![
            6 => Just("GET".to_owned()),
            1 => Just("HEAD".to_owned()),
            1 => Just("POST".to_owned()),
            1 => "[A-Z]{1,7}",
        ],
        prop_oneof![
            4 => Just("/ws".to_owned()),
            1 => Just("/page".to_owned()),
            1 => "/[a-z0-9._~/-]{0,12}",
        ],
        prop::option::of("[A-Za-z0-9%+=&._~-]{0,30}"),
        prop_oneof![
            8 => Just("HTTP/1.1"),
            1 => Just("HTTP/1.0"),
            1 => Just("HTTP/2.0"),
        ],
        required_headers(),
        vec(("X-[A-Za-z0-9-]{1,12}", "[ -~]{0,40}"), 0..8),
        prop_oneof![12 => Just(None), 1 => any::<usize>().prop_map(Some)],
    )
        .prop_map(
            |(method, path, query, version, required, extra, truncate)| RequestHead {
                method,
                path,
                query,
                version,
                required,
                extra,
                truncate,
            },
        )
}

/// Request heads built from valid and invalid parts get exactly the answer
/// their parts call for; a valid upgrade gets a 101 with the right accept
/// key and a working connection; a head cut short is dropped at the
/// handshake timeout with no answer.
#[test]
fn request_heads_get_the_answer_their_parts_call_for() {
    let (server, recorded) = block_on(head_server());
    check(256, request_head(), |head| {
        block_on(async {
            let bytes = head.bytes();
            let mut stream = send_request(&server, &bytes).await;
            if parse(&bytes) == Parse::Partial {
                let answered = wait_until_dropped(&mut stream, HANDSHAKE_TIMEOUT + STEP).await;
                assert_eq!(answered, 0, "an answer to an incomplete head");
                return;
            }
            let response = read_response_head(&mut stream)
                .await
                .expect("an answer to a complete head");
            let status = assert_well_formed(&response, true);
            assert!(
                head.expected().contains(&status),
                "status {status}, expected one of {:?}: {response:?}",
                head.expected()
            );
            if status != 101 {
                let mut body = Vec::new();
                let _ = within("body", stream.read_to_end(&mut body)).await;
                let full = format!("{response}{}", String::from_utf8_lossy(&body));
                assert_well_formed(&full, head.method == "HEAD");
                return;
            }
            assert!(
                response.contains(&format!("Sec-WebSocket-Accept: {ACCEPT_OF_SAMPLE_KEY}\r\n")),
                "{response:?}"
            );
            let mut peer = RawPeer::upgraded(stream);
            peer.send_frame(OP_TEXT, true, b"hi").await;
            let echo = peer.read_frame().await.expect("the echo");
            assert_eq!(
                (echo.opcode, echo.payload.as_slice()),
                (OP_TEXT, &b"hi"[..])
            );
            peer.close_cleanly().await;
        })
    });
    block_on(async {
        assert_healthy(&server, &recorded, "/ws").await;
    });
}

// ---- query strings ----

/// Reports what `Conn::query_pairs` and `Conn::query` say about each
/// connection's query string.
struct QueryProbe {
    seen: Sender<QuerySeen>,
}

#[derive(Debug)]
struct QuerySeen {
    pairs: Vec<(String, String)>,
    /// `query(key)` for every key in `pairs`, and for [`ABSENT`].
    lookups: Vec<(String, Option<String>)>,
}

/// A key no generated query contains.
const ABSENT: &str = "\u{1}absent";

impl Handler for QueryProbe {
    async fn on_connect(&self, conn: &Conn) -> wharf::Result<()> {
        let pairs = conn.query_pairs().to_vec();
        let lookups = pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .chain([ABSENT])
            .map(|k| (k.to_owned(), conn.query(k).map(str::to_owned)))
            .collect();
        let _ = self.seen.send(QuerySeen { pairs, lookups }).await;
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, msg: Message) -> wharf::Result<()> {
        conn.send(msg).await
    }
}

async fn query_server() -> (TestServer, Receiver<QuerySeen>) {
    install_panic_detector();
    let (seen, rx) = unbounded();
    (
        start(Server::new().route("/q", QueryProbe { seen })).await,
        rx,
    )
}

/// `application/x-www-form-urlencoded` encoding: unreserved bytes as they
/// are, space as `+`, everything else as `%XX`.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The decoding `Conn::query_pairs` documents: pairs split on `&` (empty
/// ones skipped), key and value on the first `=`, `+` is a space, `%XX` a
/// byte, an invalid escape kept as written, invalid UTF-8 replaced.
fn documented_decoding(raw: &str) -> Vec<(String, String)> {
    fn component(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi * 16 + lo);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                other => out.push(other),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (component(k), component(v))
        })
        .collect()
}

/// Checks what the handler saw against the pairs expected.
fn assert_query_seen(seen: &QuerySeen, expected: &[(String, String)]) {
    assert_eq!(seen.pairs, expected, "query_pairs");
    for (key, got) in &seen.lookups {
        let first = expected.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        assert_eq!(got.as_ref(), first, "query({key:?})");
    }
    assert!(seen.lookups.iter().any(|(k, _)| k == ABSENT));
}

fn query_text() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            any::<char>(),
            prop::sample::select(vec!['&', '=', '+', '%', ' ', 'é', '🦀']),
        ],
        0..8,
    )
    .prop_map(String::from_iter)
}

/// Any keys and values, form-encoded into the URL, come back from
/// `query_pairs` exactly, and `query(key)` gives the first value of a key.
#[test]
fn encoded_query_pairs_round_trip() {
    let (server, seen) = block_on(query_server());
    let pairs = vec((query_text(), query_text()), 0..6)
        .prop_filter("the absent key", |p| p.iter().all(|(k, _)| k != ABSENT));
    check(256, pairs, |pairs| {
        block_on(async {
            let query: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
                .collect();
            let peer = RawPeer::connect(&server, &format!("/q?{}", query.join("&"))).await;
            let got = next_event(&seen).await;
            assert_query_seen(&got, &pairs);
            peer.close_cleanly().await;
        })
    });
    block_on(async {
        assert_no_server_panic();
        assert_serves_fresh_client(&server, "/q").await;
    });
}

/// Whether `httparse` takes a byte in a request target.
fn is_uri_byte(b: u8) -> bool {
    matches!(b, 0x21..=0x7e | 0x80..=0xff)
}

/// Raw query strings: a target the parser takes upgrades, with the pairs
/// decoded as documented; one it does not is refused with 400.
#[test]
fn raw_query_strings_decode_as_documented() {
    let (server, seen) = block_on(query_server());
    let raw = vec(
        prop_oneof![
            6 => prop::sample::select("%+=&0123456789abcdefABCDEFxyz".chars().collect::<Vec<_>>()),
            2 => (0x21u8..0x7f).prop_map(char::from),
            1 => any::<char>(),
        ],
        0..30,
    )
    .prop_map(String::from_iter);
    check(256, raw, |raw| {
        block_on(async {
            let request = upgrade_request(&format!("/q?{raw}"));
            let mut stream = send_request(&server, request.as_bytes()).await;
            let response = read_response_head(&mut stream).await.expect("an answer");
            // The head only: the body is not read.
            let status = assert_well_formed(&response, true);
            if !raw.bytes().all(is_uri_byte) {
                assert_eq!(status, 400, "{raw:?}: {response:?}");
                return;
            }
            assert_eq!(status, 101, "{raw:?}: {response:?}");
            let got = next_event(&seen).await;
            assert_query_seen(&got, &documented_decoding(&raw));
            RawPeer::upgraded(stream).close_cleanly().await;
        })
    });
    block_on(async {
        assert_no_server_panic();
        assert_serves_fresh_client(&server, "/q").await;
    });
}

// ---- configuration ----

/// A route that does nothing.
struct Silent;

impl Handler for Silent {}

fn any_duration() -> BoxedStrategy<Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(Duration::from_nanos(1)),
        any::<u64>().prop_map(Duration::from_nanos),
        (0u64..10_000).prop_map(Duration::from_millis),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
    .boxed()
}

fn any_size() -> BoxedStrategy<usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(255),
        Just(256),
        Just(usize::MAX),
        any::<usize>(),
        0usize..100_000,
    ]
    .boxed()
}

/// The settings this file fuzzes: limits and timeouts of the connection
/// itself, and the server's policies.
#[derive(Debug, Clone)]
struct Settings {
    upgrade_timeout: Duration,
    close_timeout: Duration,
    max_message_size: usize,
    max_frame_size: usize,
    max_request_bytes: usize,
    send_queue: usize,
    inbound_queue: usize,
    read_buffer_size: usize,
    policies: Policies,
}

/// The policy settings.
#[derive(Debug, Clone)]
struct Policies {
    idle_timeout: Option<Duration>,
    ping_interval: Option<Duration>,
    pong_timeout: Duration,
    session_ttl: Option<Duration>,
    send_timeout: Duration,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    /// Per second and burst.
    connect_rate: Option<(f64, u32)>,
    allowed_origins: Vec<String>,
    shutdown_code: u16,
    shutdown_reason: String,
    drain_timeout: Duration,
    metrics_path: Option<String>,
}

/// Policy values as the strategies draw them: the timeouts, then the rest.
type PolicyParts = (
    (
        Option<Duration>,
        Option<Duration>,
        Duration,
        Option<Duration>,
        Duration,
        Duration,
    ),
    (
        Option<usize>,
        Option<usize>,
        Option<(f64, u32)>,
        Vec<String>,
        u16,
        String,
        Option<String>,
    ),
);

impl Policies {
    fn from_parts(
        (
            (idle, ping, pong, ttl, send, drain),
            (conns, per_ip, rate, origins, code, reason, metrics),
        ): PolicyParts,
    ) -> Policies {
        Policies {
            idle_timeout: idle,
            ping_interval: ping,
            pong_timeout: pong,
            session_ttl: ttl,
            send_timeout: send,
            max_connections: conns,
            max_connections_per_ip: per_ip,
            connect_rate: rate,
            allowed_origins: origins,
            shutdown_code: code,
            shutdown_reason: reason,
            drain_timeout: drain,
            metrics_path: metrics,
        }
    }

    /// Sets every policy through its setter on `server`.
    fn apply(&self, mut server: Server) -> Server {
        if let Some(idle) = self.idle_timeout {
            server = server.idle_timeout(idle);
        }
        server = match self.ping_interval {
            Some(interval) => server.heartbeat(interval, self.pong_timeout),
            None => server.no_heartbeat().pong_timeout(self.pong_timeout),
        };
        if let Some(ttl) = self.session_ttl {
            server = server.session_ttl(ttl);
        }
        server = server.send_timeout(self.send_timeout);
        if let Some(max) = self.max_connections {
            server = server.max_connections(max);
        }
        if let Some(max) = self.max_connections_per_ip {
            server = server.max_connections_per_ip(max);
        }
        if let Some((per_second, burst)) = self.connect_rate {
            server = server.connect_rate(ConnectRate::new(per_second, burst));
        }
        for origin in &self.allowed_origins {
            server = server.allow_origin(origin.clone());
        }
        server = server
            .shutdown_close(self.shutdown_code, &self.shutdown_reason)
            .drain_timeout(self.drain_timeout);
        if let Some(path) = &self.metrics_path {
            server = server.metrics(path.clone());
        }
        server
    }

    /// Policies the setters document as unworkable.
    fn documented_invalid(&self) -> bool {
        let zero = |d: Option<Duration>| d.is_some_and(|d| d.is_zero());
        zero(self.idle_timeout)
            || zero(self.ping_interval)
            || zero(self.session_ttl)
            || self.pong_timeout.is_zero()
            || self.send_timeout.is_zero()
            || self.drain_timeout.is_zero()
            || self.max_connections == Some(0)
            || self.max_connections_per_ip == Some(0)
            || self
                .connect_rate
                .is_some_and(|(rate, burst)| !(rate.is_finite() && rate > 0.0) || burst == 0)
            || !CloseCode::from(self.shutdown_code).is_sendable()
            || self
                .metrics_path
                .as_ref()
                .is_some_and(|p| !p.starts_with('/'))
            // Not even a scheme: never an origin. (Other strings may be
            // refused too; the test only checks that these always are.)
            || self.allowed_origins.iter().any(|o| !o.contains(':'))
    }
}

/// Any policies.
fn any_policies() -> impl Strategy<Value = Policies> {
    let rate = prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(0.0),
        Just(-1.0),
        any::<f64>(),
        0.001f64..1e6,
    ];
    let origin = prop_oneof![
        Just("http://localhost:8000".to_owned()),
        "https?://[a-z.]{0,12}(:[0-9]{1,5})?",
        ".{0,20}",
    ];
    (
        (
            prop::option::of(any_duration()),
            prop::option::of(any_duration()),
            any_duration(),
            prop::option::of(any_duration()),
            any_duration(),
            any_duration(),
        ),
        (
            prop::option::of(any_size()),
            prop::option::of(any_size()),
            prop::option::of((rate, any::<u32>())),
            vec(origin, 0..3),
            close_code(),
            close_reason(),
            prop::option::of(prop_oneof!["/[a-z/]{0,10}", ".{0,10}"]),
        ),
    )
        .prop_map(Policies::from_parts)
}

/// Policies that leave a short exchange with one client alone: no ping or
/// expiry within seconds, room for two connections, any Origin list (the
/// test clients send no Origin).
fn workable_policies() -> impl Strategy<Value = Policies> {
    let long = (10u64..120).prop_map(Duration::from_secs);
    let short = (50u64..10_000).prop_map(Duration::from_millis);
    (
        (
            prop::option::of(long.clone()),
            prop::option::of(long.clone()),
            short.clone(),
            prop::option::of(long),
            short.clone(),
            short,
        ),
        (
            prop::option::of(3usize..1000),
            prop::option::of(3usize..1000),
            prop::option::of((0.1f64..1000.0, 3u32..100)),
            vec("https?://[a-z]{1,8}\\.example(:[0-9]{1,4})?", 0..3),
            prop::sample::select(vec![1000u16, 1001, 1012, 1013, 3000, 4999]),
            close_reason(),
            prop::option::of("/[a-z]{1,8}"),
        ),
    )
        .prop_map(Policies::from_parts)
}

impl Settings {
    /// A server with every setting set through its setter.
    fn server(&self) -> Server {
        let server = Server::new()
            .upgrade_timeout(self.upgrade_timeout)
            .close_timeout(self.close_timeout)
            .max_message_size(self.max_message_size)
            .max_frame_size(self.max_frame_size)
            .max_request_bytes(self.max_request_bytes)
            .send_queue(self.send_queue)
            .inbound_queue(self.inbound_queue)
            .read_buffer_size(self.read_buffer_size);
        self.policies.apply(server)
    }

    /// Settings the setters document as unworkable.
    fn documented_invalid(&self) -> bool {
        self.send_queue == 0
            || self.inbound_queue == 0
            || self.read_buffer_size == 0
            || self.max_request_bytes < 256
            || self.read_buffer_size > 16 << 20
            || self.max_message_size == 0
            || self.max_frame_size == 0
            || self.max_request_bytes > 1 << 20
            || self.upgrade_timeout.is_zero()
            || self.close_timeout.is_zero()
            || self.policies.documented_invalid()
    }
}

fn settings(
    duration: BoxedStrategy<Duration>,
    size: BoxedStrategy<usize>,
    request: BoxedStrategy<usize>,
    queue: BoxedStrategy<usize>,
    read_buffer: BoxedStrategy<usize>,
    policies: impl Strategy<Value = Policies>,
) -> impl Strategy<Value = Settings> {
    (
        duration.clone(),
        duration,
        size.clone(),
        size,
        request,
        queue.clone(),
        queue,
        read_buffer,
        policies,
    )
        .prop_map(|(ht, ct, mm, mf, mr, sq, iq, rb, policies)| Settings {
            upgrade_timeout: ht,
            close_timeout: ct,
            max_message_size: mm,
            max_frame_size: mf,
            max_request_bytes: mr,
            send_queue: sq,
            inbound_queue: iq,
            read_buffer_size: rb,
            policies,
        })
}

/// Any values: `bind` either binds or fails with `Error::Config` naming the
/// setting (always for the settings documented as unworkable), and never
/// panics.
#[test]
fn any_config_binds_or_is_refused_with_a_config_error() {
    install_panic_detector();
    let strategy = settings(
        any_duration(),
        any_size(),
        any_size(),
        any_size(),
        any_size(),
        any_policies(),
    );
    check(256, strategy, |settings| {
        block_on(async {
            let result = within(
                "bind",
                settings.server().route("/", Silent).bind("127.0.0.1:0"),
            )
            .await;
            match result {
                Ok(listening) => {
                    assert!(!settings.documented_invalid(), "bound with {settings:?}");
                    drop(listening);
                }
                Err(Error::Config { setting, reason }) => {
                    assert!(!setting.is_empty() && !reason.is_empty())
                }
                Err(other) => panic!("{settings:?} gave {other:?}"),
            }
        })
    });
    block_on(async {
        assert_no_server_panic();
    });
}

/// Workable values, from the smallest up to "no limit": the server binds and
/// serves: a message within the size limits is echoed, one just over them
/// is refused with 1009, and a close completes.
#[test]
fn workable_configs_serve() {
    install_panic_detector();
    let duration = prop_oneof![
        (50u64..5_000).prop_map(Duration::from_millis),
        Just(Duration::MAX),
    ]
    .boxed();
    let size = prop_oneof![1usize..4096, 4096usize..(1 << 20), Just(usize::MAX)].boxed();
    let strategy = (
        settings(
            duration,
            size,
            (256usize..(64 << 10)).boxed(),
            (1usize..64).boxed(),
            // Tungstenite allocates the read buffer up front: see
            // `a_huge_read_buffer_is_refused_or_served` below.
            (1usize..(64 << 10)).boxed(),
            workable_policies(),
        ),
        0usize..4096,
    );
    check(64, strategy, |(settings, len)| {
        block_on(async {
            let (server, recorded) = echo_server(settings.server()).await;
            let limit = settings.max_message_size.min(settings.max_frame_size);
            let len = len % limit.saturating_add(1).min(4097);
            let (mut peer, _handle) = raw_connection(&server, &recorded, "/").await;
            peer.send_frame(OP_BINARY, true, &vec![7u8; len]).await;
            let echo = peer.read_frame().await.expect("the echo");
            assert_eq!((echo.opcode, echo.payload.len()), (OP_BINARY, len));
            if limit < 8 << 10 {
                peer.send_frame(OP_BINARY, true, &vec![8u8; limit + 1])
                    .await;
                let seen = peer.read_until_close().await;
                assert_eq!(seen.code, Some(1009), "{settings:?}");
                peer.stream.shutdown(Shutdown::Write).expect("shutdown");
                peer.expect_eof().await;
            } else {
                peer.close_cleanly().await;
            }
            // The fresh client's message needs room.
            if limit >= 64 {
                assert_healthy(&server, &recorded, "/").await;
            } else {
                recorded.assert_all_closed().await;
                assert_no_server_panic();
            }
        })
    });
}

/// `read_buffer_size` once had no upper bound in the server's checks, and
/// tungstenite reserves the whole buffer when a connection is upgraded: a
/// server configured with 1 TiB binds, then aborts the process ("memory
/// allocation of 1099511627776 bytes failed") on its first connection
/// (`usize::MAX` panics with a capacity overflow instead). Either refusing
/// the value in `bind` or serving the client makes this pass.
#[test]
fn a_huge_read_buffer_is_refused_or_served() {
    install_panic_detector();
    block_on(async {
        for size in [1usize << 40, usize::MAX] {
            let (echo, recorded) = recording_echo();
            let bound = Server::new()
                .read_buffer_size(size)
                .route("/", echo)
                .bind("127.0.0.1:0");
            match within("bind", bound).await {
                Err(Error::Config { .. }) => continue,
                Err(other) => panic!("{other:?}"),
                Ok(listening) => {
                    let server = TestServer {
                        addr: listening.local_addr(),
                        registry: listening.registry(),
                        handle: listening.handle(),
                        run: async_std::task::spawn(listening.run()),
                    };
                    assert_healthy(&server, &recorded, "/").await;
                }
            }
        }
    });
}

// ---- bytes and frames after the upgrade ----

/// Checks the frames a server sent: data frames whole (text in UTF-8),
/// control frames small, at most one Close and nothing after it, and a
/// Close that carries a sendable code and a short UTF-8 reason. Returns the
/// Close's code, `Some(None)` for a Close without one, `None` for no Close.
fn assert_valid_server_frames(frames: &[RawFrame]) -> Option<Option<u16>> {
    let mut close = None;
    for (i, frame) in frames.iter().enumerate() {
        assert!(close.is_none(), "a frame after the Close: {frames:?}");
        match frame.opcode {
            OP_TEXT => {
                assert!(frame.fin, "a fragment from the server: {frame:?}");
                assert!(std::str::from_utf8(&frame.payload).is_ok(), "{frame:?}");
            }
            OP_BINARY => assert!(frame.fin, "a fragment from the server: {frame:?}"),
            OP_PING | OP_PONG => assert!(frame.fin && frame.payload.len() <= 125, "{frame:?}"),
            OP_CLOSE => {
                let p = &frame.payload;
                assert!(frame.fin && p.len() <= 125 && p.len() != 1, "{frame:?}");
                if p.len() >= 2 {
                    let code = u16::from_be_bytes([p[0], p[1]]);
                    assert!(CloseCode::from(code).is_sendable(), "code {code} sent");
                    let reason = std::str::from_utf8(&p[2..]).expect("UTF-8 reason");
                    assert!(reason.len() <= MAX_REASON_BYTES);
                    close = Some(Some(code));
                } else {
                    close = Some(None);
                }
            }
            other => panic!("opcode {other:#x} from the server (frame {i})"),
        }
    }
    close
}

/// Reads frames until the server ends the stream.
async fn frames_until_eof(peer: &mut RawPeer) -> Vec<RawFrame> {
    let mut frames = Vec::new();
    while let Some(frame) = peer.read_frame().await {
        frames.push(frame);
        assert!(frames.len() < 10_000, "endless frames");
    }
    frames
}

/// Arbitrary bytes after a valid upgrade, then the end of the client's
/// stream: whatever the server sends back is valid, a Close it sends has a
/// sendable code that its close handler also reports, and it always ends.
#[test]
fn arbitrary_bytes_after_the_upgrade() {
    let (server, recorded) = block_on(echo_server(
        Server::new().close_timeout(Duration::from_secs(2)),
    ));
    let bytes = prop_oneof![
        vec(any::<u8>(), 0..300),
        // Starting like a masked frame, which gets further.
        (
            prop::sample::select(vec![0x81u8, 0x82, 0x01, 0x00, 0x80, 0x88, 0x89, 0x8a]),
            0x80u8..=0xff,
            vec(any::<u8>(), 0..300)
        )
            .prop_map(|(b0, b1, rest)| [vec![b0, b1], rest].concat()),
    ];
    check(256, bytes, |bytes| {
        block_on(async {
            let (mut peer, handle) = raw_connection(&server, &recorded, "/").await;
            peer.send_raw(&bytes).await;
            peer.stream.shutdown(Shutdown::Write).expect("shutdown");
            let frames = frames_until_eof(&mut peer).await;
            let close = assert_valid_server_frames(&frames);
            let closed = recorded.closed_of(handle.id()).await;
            match close {
                Some(Some(code)) => assert_eq!(closed.code.as_u16(), code, "{closed:?}"),
                Some(None) => assert_eq!(closed.code, CloseCode::NO_STATUS, "{closed:?}"),
                // No Close frame: the stream ended (or the server closed
                // after echoing a Close and our unread bytes reset it).
                None => {}
            }
        })
    });
    block_on(async {
        assert_healthy(&server, &recorded, "/").await;
    });
}

/// One frame as a client might send it, possibly broken.
#[derive(Debug, Clone)]
struct WireFrame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    masked: bool,
    payload: Vec<u8>,
}

impl WireFrame {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = frame(self.opcode, self.fin, &self.payload, self.masked);
        bytes[0] |= self.rsv << 4;
        bytes
    }
}

/// A well-formed client frame.
fn valid_frame(opcode: u8, fin: bool, payload: Vec<u8>) -> WireFrame {
    WireFrame {
        fin,
        rsv: 0,
        opcode,
        masked: true,
        payload,
    }
}

/// A ping or a pong.
fn control_frame() -> impl Strategy<Value = WireFrame> {
    (
        prop::sample::select(vec![OP_PING, OP_PONG]),
        vec(any::<u8>(), 0..20),
    )
        .prop_map(|(opcode, payload)| valid_frame(opcode, true, payload))
}

/// A text or binary message cut into fragments at random bytes (so a
/// character may straddle two), with pings and pongs between them.
fn message_frames() -> impl Strategy<Value = Vec<WireFrame>> {
    (
        prop_oneof![3 => Just(OP_TEXT), 1 => Just(OP_BINARY)],
        prop_oneof![
            8 => ".{0,60}".prop_map(String::into_bytes),
            1 => vec(any::<u8>(), 0..60),
        ],
        vec(any::<prop::sample::Index>(), 0..3),
        vec(prop::option::weighted(0.3, control_frame()), 3),
    )
        .prop_map(|(opcode, payload, cuts, controls)| {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.push(payload.len());
            let mut frames = Vec::new();
            let mut start = 0;
            for (i, &end) in cuts.iter().enumerate() {
                let op = if i == 0 { opcode } else { OP_CONT };
                let last = i + 1 == cuts.len();
                frames.push(valid_frame(op, last, payload[start..end].to_vec()));
                if let (false, Some(control)) = (last, &controls[i]) {
                    frames.push(control.clone());
                }
                start = end;
            }
            frames
        })
}

/// Mostly valid conversations: messages, pings and pongs, sometimes a Close
/// (valid or not) and sometimes an arbitrary, possibly broken, frame.
fn conversation() -> impl Strategy<Value = Vec<WireFrame>> {
    let unit = prop_oneof![
        6 => message_frames(),
        2 => control_frame().prop_map(|f| vec![f]),
        1 => close_payload().prop_map(|p| vec![valid_frame(OP_CLOSE, true, p)]),
        2 => wire_frame().prop_map(|f| vec![f]),
    ];
    vec(unit, 1..8).prop_map(|units| units.concat())
}

/// Close payloads: empty, one byte, a code with a valid or invalid reason,
/// or one too long for a control frame.
fn close_payload() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        1 => Just(Vec::new()),
        1 => any::<u8>().prop_map(|b| vec![b]),
        4 => (close_code(), ".{0,20}")
            .prop_map(|(code, reason)| [&code.to_be_bytes()[..], reason.as_bytes()].concat()),
        1 => (close_code(), vec(any::<u8>(), 0..10))
            .prop_map(|(code, reason)| [&code.to_be_bytes()[..], &reason[..]].concat()),
        1 => close_code().prop_map(|code| [&code.to_be_bytes()[..], &[b'r'; 124][..]].concat()),
    ]
    .boxed()
}

/// Any single frame: any opcode, fin, RSV bits, mask and payload.
fn wire_frame() -> impl Strategy<Value = WireFrame> {
    let text = prop_oneof![
        8 => ".{0,40}".prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..40),
        // Halves of multi-byte characters, valid only together.
        2 => prop::sample::select(vec![
            &b"\xc3"[..], b"\xa9", b"\xf0\x9f", b"\xa6\x80", b"\xe2\x82", b"\xac",
        ])
        .prop_map(<[u8]>::to_vec),
    ]
    .boxed();
    let close = close_payload();
    let opcode = prop_oneof![
        4 => Just(OP_TEXT),
        2 => Just(OP_BINARY),
        4 => Just(OP_CONT),
        2 => Just(OP_PING),
        1 => Just(OP_PONG),
        1 => Just(OP_CLOSE),
        1 => prop::sample::select(vec![3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]),
    ];
    opcode
        .prop_flat_map(move |opcode| {
            let payload = match opcode {
                OP_TEXT | OP_CONT => text.clone().boxed(),
                OP_CLOSE => close.clone().boxed(),
                _ => vec(any::<u8>(), 0..140).boxed(),
            };
            (
                Just(opcode),
                prop::bool::weighted(0.7),
                prop_oneof![19 => Just(0u8), 1 => 1u8..8],
                prop::bool::weighted(0.97),
                payload,
            )
        })
        .prop_map(|(opcode, fin, rsv, masked, payload)| WireFrame {
            fin,
            rsv,
            opcode,
            masked,
            payload,
        })
}

/// How a sequence of frames must end, per RFC 6455 and the server's docs.
#[derive(Debug, PartialEq)]
enum End {
    /// The server fails the connection with this code (its own Close).
    Violation(u16),
    /// The peer's Close: the code echoed on the wire (`None` for a Close
    /// without one), and the code the close handler reports.
    PeerClose { wire: Option<u16>, reported: u16 },
    /// Still open after the last frame.
    Open,
}

/// Data messages as (opcode, payload).
type Messages = Vec<(u8, Vec<u8>)>;

/// What the server must answer to a sequence of frames.
#[derive(Debug)]
struct Expected {
    end: End,
    /// Complete messages before the end, which are echoed.
    echoes: Messages,
    /// Payloads of the pings before the end.
    pings: Vec<Vec<u8>>,
    /// Frames to send: all of them, except none after the peer's Close.
    send: usize,
}

/// Codes tungstenite accepts in a peer's Close (it answers others, 1014
/// included, with 1002; see `CloseCode::BAD_GATEWAY`).
fn accepted_from_peer(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999)
}

/// Whether `bytes` hold an invalid UTF-8 sequence (as opposed to one that is
/// only cut short at the end).
fn invalid_utf8_so_far(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_err_and(|e| e.error_len().is_some())
}

/// A model of RFC 6455 section 5 for a server without extensions.
fn model(frames: &[WireFrame]) -> Expected {
    let mut echoes = Vec::new();
    let mut pings = Vec::new();
    let mut message: Option<(u8, Vec<u8>)> = None;
    let fail = |code, echoes, pings| Expected {
        end: End::Violation(code),
        echoes,
        pings,
        send: frames.len(),
    };
    for (i, f) in frames.iter().enumerate() {
        if f.rsv != 0 || !f.masked {
            return fail(1002, echoes, pings);
        }
        let payload = f.payload.clone();
        match f.opcode {
            OP_CLOSE | OP_PING | OP_PONG | 0xb..=0xf => {
                if !f.fin || payload.len() > 125 {
                    return fail(1002, echoes, pings);
                }
                match f.opcode {
                    OP_PING => pings.push(payload),
                    OP_PONG => {}
                    OP_CLOSE => {
                        let end = match payload.len() {
                            0 => End::PeerClose {
                                wire: None,
                                reported: 1005,
                            },
                            1 => return fail(1002, echoes, pings),
                            _ => {
                                if std::str::from_utf8(&payload[2..]).is_err() {
                                    return fail(1007, echoes, pings);
                                }
                                let code = u16::from_be_bytes([payload[0], payload[1]]);
                                let code = if accepted_from_peer(code) { code } else { 1002 };
                                End::PeerClose {
                                    wire: Some(code),
                                    reported: code,
                                }
                            }
                        };
                        return Expected {
                            end,
                            echoes,
                            pings,
                            send: i + 1,
                        };
                    }
                    _ => return fail(1002, echoes, pings),
                }
            }
            OP_CONT => {
                let Some((opcode, buf)) = message.as_mut() else {
                    return fail(1002, echoes, pings);
                };
                buf.extend_from_slice(&payload);
                if *opcode == OP_TEXT && invalid_utf8_so_far(buf) {
                    return fail(1007, echoes, pings);
                }
                if f.fin {
                    let (opcode, buf) = message.take().unwrap();
                    if opcode == OP_TEXT && std::str::from_utf8(&buf).is_err() {
                        return fail(1007, echoes, pings);
                    }
                    echoes.push((opcode, buf));
                }
            }
            OP_TEXT | OP_BINARY => {
                if message.is_some() {
                    return fail(1002, echoes, pings);
                }
                let text = f.opcode == OP_TEXT;
                if f.fin {
                    if text && std::str::from_utf8(&payload).is_err() {
                        return fail(1007, echoes, pings);
                    }
                    echoes.push((f.opcode, payload));
                } else {
                    if text && invalid_utf8_so_far(&payload) {
                        return fail(1007, echoes, pings);
                    }
                    message = Some((f.opcode, payload));
                }
            }
            // Reserved data opcodes.
            _ => return fail(1002, echoes, pings),
        }
    }
    Expected {
        end: End::Open,
        echoes,
        pings,
        send: frames.len(),
    }
}

/// Splits what the server sent into data messages and pong payloads,
/// leaving out a final Close.
fn split_answer(frames: &[RawFrame]) -> (Messages, Vec<Vec<u8>>) {
    let mut data = Vec::new();
    let mut pongs = Vec::new();
    for frame in frames {
        match frame.opcode {
            OP_TEXT | OP_BINARY => data.push((frame.opcode, frame.payload.clone())),
            OP_PONG => pongs.push(frame.payload.clone()),
            _ => {}
        }
    }
    (data, pongs)
}

/// Pongs answer pings in order; an endpoint may skip all but the latest of
/// pings it has not answered yet (RFC 6455 5.5.3), or drop one for a Close.
fn assert_pongs_answer_pings(pongs: &[Vec<u8>], pings: &[Vec<u8>]) {
    let mut rest = pings.iter();
    for pong in pongs {
        assert!(
            rest.any(|ping| ping == pong),
            "pong {pong:?} answers no ping in order: pongs {pongs:?}, pings {pings:?}"
        );
    }
}

/// Sequences of random, mostly well-formed frames, each checked against a
/// model of RFC 6455: complete messages are echoed in order; a violation
/// gets exactly one Close with its code (1002, or 1007 for bad UTF-8) after
/// the echoes of what came before; a peer's Close is echoed; a connection
/// left valid keeps serving (a ping is answered, a Close echoed).
#[test]
fn random_frame_sequences_end_as_rfc_6455_says() {
    let (server, recorded) = block_on(echo_server(
        Server::new().close_timeout(Duration::from_secs(2)),
    ));
    check(256, conversation(), |frames| {
        block_on(async {
            let expected = model(&frames);
            let bytes: Vec<u8> = frames[..expected.send]
                .iter()
                .flat_map(WireFrame::encode)
                .collect();
            let (mut peer, handle) = raw_connection(&server, &recorded, "/").await;
            peer.send_raw(&bytes).await;
            let closed = match expected.end {
                End::Violation(code) => {
                    peer.stream.shutdown(Shutdown::Write).expect("shutdown");
                    let answer = frames_until_eof(&mut peer).await;
                    assert_eq!(
                        assert_valid_server_frames(&answer),
                        Some(Some(code)),
                        "{answer:?}"
                    );
                    let (data, pongs) = split_answer(&answer);
                    assert_eq!(
                        data, expected.echoes,
                        "every message before the violation is answered"
                    );
                    assert_pongs_answer_pings(&pongs, &expected.pings);
                    let closed = recorded.closed_of(handle.id()).await;
                    assert_eq!(
                        (closed.code.as_u16(), closed.initiator),
                        (code, Initiator::Server)
                    );
                    closed
                }
                End::PeerClose { wire, reported } => {
                    let answer = frames_until_eof(&mut peer).await;
                    assert_eq!(
                        assert_valid_server_frames(&answer),
                        Some(wire),
                        "{answer:?}"
                    );
                    let (data, pongs) = split_answer(&answer);
                    assert!(
                        expected.echoes.starts_with(&data),
                        "echoes {data:?} of {:?}",
                        expected.echoes
                    );
                    assert_pongs_answer_pings(&pongs, &expected.pings);
                    let closed = recorded.closed_of(handle.id()).await;
                    assert_eq!(
                        (closed.code.as_u16(), closed.initiator),
                        (reported, Initiator::Client)
                    );
                    closed
                }
                End::Open => {
                    peer.send_frame(OP_PING, true, b"probe").await;
                    let mut answer = Vec::new();
                    loop {
                        let (data, pongs) = split_answer(&answer);
                        let probed = pongs.last().map(Vec::as_slice) == Some(&b"probe"[..]);
                        if data.len() >= expected.echoes.len() && probed {
                            assert_eq!(data, expected.echoes);
                            let mut pings = expected.pings.clone();
                            pings.push(b"probe".to_vec());
                            assert_pongs_answer_pings(&pongs, &pings);
                            break;
                        }
                        answer.push(peer.read_frame().await.expect("echoes and the pong"));
                        assert_eq!(assert_valid_server_frames(&answer), None, "{answer:?}");
                    }
                    peer.send_close(1000, b"").await;
                    let seen = peer.read_until_close().await;
                    assert_eq!((seen.code, seen.before.len()), (Some(1000), 0), "{seen:?}");
                    peer.expect_eof().await;
                    let closed = recorded.closed_of(handle.id()).await;
                    assert_eq!(
                        (closed.code.as_u16(), closed.initiator),
                        (1000, Initiator::Client)
                    );
                    assert!(closed.clean, "{closed:?}");
                    closed
                }
            };
            assert_eq!(
                closed.messages_in,
                expected.echoes.len() as u64,
                "{closed:?}"
            );
        })
    });
    block_on(async {
        assert_healthy(&server, &recorded, "/").await;
    });
}
