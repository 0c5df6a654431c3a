//! WebSocket through the gateway: a handshake to a service that takes
//! upgrades is authenticated, rate-limited and routed like any request, then
//! spliced to a real WebSocket echo server until either side closes or the
//! connection idles; a service that does not take upgrades gets a plain GET.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::{
    common::{Registry, bearer, client, echo, gateway, metrics, token},
    upstream_tls::{gateway_trusting_the_test_ca, server_config},
};
use futures_util::{SinkExt as _, StreamExt as _};
use mcp_shared::registry::HealthStatus;
use mcp_testkit::{TestService, eventually, prefix, redis, registry::instance_at};
use tokio::{net::TcpStream, task::JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::{
    WebSocketStream, client_async,
    tungstenite::{self, Message, client::IntoClientRequest as _, http::HeaderValue},
};

/// Bound on every wait for the gateway or a WebSocket.
const WAIT: Duration = Duration::from_secs(10);

/// A WebSocket echo server on 127.0.0.1:0 (tokio-tungstenite): it echoes
/// text and binary messages and answers a close; it counts handshakes and
/// the close frames it received.
struct EchoServer {
    service: TestService,
    handshakes: Arc<AtomicUsize>,
    closes: Arc<AtomicUsize>,
    /// The protocol each TLS connection's ALPN chose (TLS servers only).
    alpn: Arc<Mutex<Vec<String>>>,
}

async fn websocket_echo() -> EchoServer {
    echo_server(None).await
}

/// [`websocket_echo`], over TLS with `tls` when given.
async fn echo_server(tls: Option<TlsAcceptor>) -> EchoServer {
    let handshakes = Arc::new(AtomicUsize::new(0));
    let closes = Arc::new(AtomicUsize::new(0));
    let alpn = Arc::new(Mutex::new(Vec::new()));
    let (counted, closed, chosen) = (handshakes.clone(), closes.clone(), alpn.clone());
    let service = mcp_testkit::spawn(|listener, shutdown| async move {
        // The connections' tasks end with the server (the set aborts them).
        let mut connections = JoinSet::new();
        loop {
            let (tcp, _) = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                accepted = listener.accept() => accepted?,
            };
            let (counted, closed, chosen) = (counted.clone(), closed.clone(), chosen.clone());
            let tls = tls.clone();
            connections.spawn(async move {
                let Some(tls) = tls else {
                    return echo_messages(tcp, &counted, &closed).await;
                };
                let Ok(stream) = tls.accept(tcp).await else {
                    return;
                };
                let protocol = stream.get_ref().1.alpn_protocol().unwrap_or_default();
                chosen
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(protocol).into_owned());
                echo_messages(stream, &counted, &closed).await;
            });
        }
    })
    .await;
    EchoServer {
        service,
        handshakes,
        closes,
        alpn,
    }
}

/// One connection of the echo server: the handshake, then each message back.
async fn echo_messages<S>(stream: S, handshakes: &AtomicUsize, closes: &AtomicUsize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    handshakes.fetch_add(1, Ordering::SeqCst);
    while let Some(Ok(message)) = ws.next().await {
        if message.is_close() {
            // tungstenite queues the close reply; the next read sends it.
            closes.fetch_add(1, Ordering::SeqCst);
        } else if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}

/// Register `addr` as instance `id` of `service`, taking upgrades when `websocket`.
async fn register(
    registry: &Registry,
    service: &str,
    id: &str,
    addr: std::net::SocketAddr,
    websocket: bool,
) {
    let mut instance = instance_at(service, id, addr);
    if websocket {
        instance
            .metadata
            .insert("websocket".to_owned(), "true".to_owned());
    }
    registry.register(&instance).await;
}

/// A gateway started with `extra` flags, in front of service `chat`: one
/// WebSocket echo instance registered with `websocket=true`.
async fn chat(extra: &[&str]) -> (EchoServer, TestService) {
    let prefix = prefix();
    let upstream = websocket_echo().await;
    let registry = Registry::new(&redis().url(), &prefix);
    register(&registry, "chat", "chat-1", upstream.service.addr, true).await;
    (upstream, gateway(&redis().url(), &prefix, extra).await)
}

type Client = WebSocketStream<TcpStream>;

/// A WebSocket handshake to `path` on the gateway, with `token` when given.
async fn connect(
    gw: &TestService,
    path: &str,
    token: Option<&str>,
) -> Result<Client, tungstenite::Error> {
    let mut request = format!("ws://{}{path}", gw.addr)
        .into_client_request()
        .unwrap();
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&bearer(token)).unwrap(),
        );
    }
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (ws, response) = tokio::time::timeout(WAIT, client_async(request, tcp))
        .await
        .expect("handshake within the bound")?;
    assert_eq!(response.status(), 101);
    Ok(ws)
}

/// The status of a refused handshake.
fn refused_status(result: Result<Client, tungstenite::Error>) -> u16 {
    match result {
        Ok(_) => panic!("the handshake was switched"),
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("handshake failed: {other}"),
    }
}

/// A WebSocket through the gateway once the service is in its routing table
/// (404 until then). Each try is another subject (`{probe}-{n}`), with an
/// allowance of its own: the tries spend no one else's rate limit.
async fn routed(gw: &TestService, path: &str, probe: &str) -> Client {
    for n in 0..200 {
        let token = token(&format!("{probe}-{n}"), "");
        match connect(gw, path, Some(&token)).await {
            Ok(ws) => return ws,
            Err(tungstenite::Error::Http(response)) if response.status() == 404 => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(other) => panic!("handshake failed: {other}"),
        }
    }
    panic!("the service never became routable");
}

/// The next message, within the bound.
async fn next(ws: &mut Client) -> Option<Result<Message, tungstenite::Error>> {
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a message or the end within the bound")
}

#[tokio::test]
async fn text_and_binary_messages_echo_through_the_gateway_and_a_close_passes_both_ways() {
    let (upstream, gw) = chat(&[]).await;
    let mut ws = routed(&gw, "/svc/chat/ws", "probe").await;

    ws.send(Message::text("hello through the gateway"))
        .await
        .unwrap();
    match next(&mut ws).await {
        Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), "hello through the gateway"),
        other => panic!("expected the text back, got {other:?}"),
    }
    let bytes: Vec<u8> = (0..=255).cycle().take(100_000).collect();
    ws.send(Message::binary(bytes.clone())).await.unwrap();
    match next(&mut ws).await {
        Some(Ok(Message::Binary(back))) => assert_eq!(back.as_ref(), &bytes[..]),
        other => panic!("expected the bytes back, got {other:?}"),
    }

    ws.close(None).await.unwrap();
    match next(&mut ws).await {
        Some(Ok(Message::Close(_))) => {}
        other => panic!("expected the close back, got {other:?}"),
    }
    assert!(
        eventually(WAIT, || async {
            upstream.closes.load(Ordering::SeqCst) == 1
        })
        .await,
        "the upstream saw the close"
    );
}

#[tokio::test]
async fn an_https_instance_gets_the_handshake_over_http11_though_its_alpn_offers_h2() {
    let prefix = prefix();
    let config = server_config("upstream-server-cert.pem", "upstream-server-key.pem", None);
    let upstream = echo_server(Some(TlsAcceptor::from(Arc::new(config)))).await;
    let registry = Registry::new(&redis().url(), &prefix);
    let mut instance = instance_at("secure-chat", "s-1", upstream.service.addr);
    instance.metadata = BTreeMap::from([
        ("protocol".to_owned(), "https".to_owned()),
        ("websocket".to_owned(), "true".to_owned()),
    ]);
    registry.register(&instance).await;
    let gw = gateway_trusting_the_test_ca(&prefix).await;

    let mut ws = routed(&gw, "/svc/secure-chat/ws", "probe").await;
    ws.send(Message::text("over TLS")).await.unwrap();
    match next(&mut ws).await {
        Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), "over TLS"),
        other => panic!("expected the text back, got {other:?}"),
    }
    // HTTP/2 has no 101: the handshake's connection must not take h2 (the
    // gateway's HTTP/1.1 client offers `http/1.1` or nothing).
    let chosen = upstream.alpn.lock().unwrap().clone();
    assert_eq!(chosen.len(), 1, "one TLS connection: {chosen:?}");
    assert_ne!(chosen[0], "h2");
}

#[tokio::test]
async fn a_handshake_without_a_token_is_401_and_never_reaches_the_upstream() {
    let (upstream, gw) = chat(&[]).await;
    drop(routed(&gw, "/svc/chat/ws", "probe").await);
    let seen = upstream.handshakes.load(Ordering::SeqCst);

    assert_eq!(
        refused_status(connect(&gw, "/svc/chat/ws", None).await),
        401
    );
    assert_eq!(
        refused_status(connect(&gw, "/svc/chat/ws", Some("not-a-jwt")).await),
        401
    );
    assert_eq!(upstream.handshakes.load(Ordering::SeqCst), seen);
}

#[tokio::test]
async fn a_handshake_over_the_rate_limit_is_429() {
    let (upstream, gw) = chat(&["--rate-limit-rps", "1", "--rate-limit-burst", "1"]).await;
    // The probes have their own allowances (per subject): alice's is whole.
    let probe = routed(&gw, "/svc/chat/ws", "probe").await;
    let seen = upstream.handshakes.load(Ordering::SeqCst);

    let alice = token("alice", "");
    let first = connect(&gw, "/svc/chat/ws", Some(&alice)).await.unwrap();
    assert_eq!(
        refused_status(connect(&gw, "/svc/chat/ws", Some(&alice)).await),
        429
    );
    assert_eq!(upstream.handshakes.load(Ordering::SeqCst), seen + 1);
    drop((first, probe));
}

#[tokio::test]
async fn handshakes_past_websocket_max_connections_are_503_until_one_closes() {
    let (upstream, gw) = chat(&["--websocket-max-connections", "1"]).await;
    let mut open = routed(&gw, "/svc/chat/ws", "probe").await;
    let seen = upstream.handshakes.load(Ordering::SeqCst);

    let bob = token("bob", "");
    assert_eq!(
        refused_status(connect(&gw, "/svc/chat/ws", Some(&bob)).await),
        503
    );
    assert_eq!(
        upstream.handshakes.load(Ordering::SeqCst),
        seen,
        "no instance asked"
    );

    // Its place is free once the open one has closed (bounded wait).
    open.close(None).await.unwrap();
    while next(&mut open).await.is_some() {}
    drop(open);
    let mut admitted = None;
    for _ in 0..100 {
        match connect(&gw, "/svc/chat/ws", Some(&bob)).await {
            Ok(ws) => {
                admitted = Some(ws);
                break;
            }
            Err(tungstenite::Error::Http(response)) if response.status() == 503 => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("handshake failed: {other}"),
        }
    }
    assert!(
        admitted.is_some(),
        "the closed WebSocket's place was never freed"
    );
}

#[tokio::test]
async fn a_service_whose_instances_do_not_take_upgrades_gets_a_plain_get() {
    let prefix = prefix();
    let upstream = echo("plain").await;
    let registry = Registry::new(&redis().url(), &prefix);
    register(&registry, "plain", "plain-1", upstream.addr, false).await;
    let gw = gateway(&redis().url(), &prefix, &[]).await;
    let handshake = || {
        client()
            .get(gw.at("/svc/plain/ws"))
            .header("authorization", bearer(&token("alice", "")))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
    };
    assert!(
        eventually(WAIT, || async {
            handshake().await.is_ok_and(|r| r.status() != 404)
        })
        .await,
        "the service never became routable"
    );

    let response = handshake().await.unwrap();
    assert_eq!(response.status(), 200, "no 101 to the client");
    let seen: serde_json::Value = response.json().await.unwrap();
    let headers = &seen["headers"];
    assert!(headers.get("upgrade").is_none(), "{headers}");
    assert!(headers.get("connection").is_none(), "{headers}");
    // The handshake's other headers are end-to-end: they pass.
    assert_eq!(headers["sec-websocket-version"], "13");
}

#[tokio::test]
async fn a_silent_websocket_is_closed_at_the_idle_timeout() {
    let (_upstream, gw) = chat(&["--websocket-idle-timeout", "1s"]).await;
    let mut ws = routed(&gw, "/svc/chat/ws", "probe").await;
    // Live at first.
    ws.send(Message::text("ping")).await.unwrap();
    assert!(matches!(next(&mut ws).await, Some(Ok(Message::Text(_)))));

    // Then silence: the gateway drops both connections (no close frame: it
    // does not speak WebSocket), well within the bound.
    match next(&mut ws).await {
        None | Some(Err(_)) => {}
        Some(Ok(message)) => panic!("expected the end, got {message:?}"),
    }
}

#[tokio::test]
async fn a_busy_websocket_is_closed_at_its_max_duration() {
    let (_upstream, gw) = chat(&["--websocket-max-duration", "1s"]).await;
    let mut ws = routed(&gw, "/svc/chat/ws", "probe").await;
    // Traffic all along (never idle), until the gateway ends it: at most
    // 100 round trips 100 ms apart, ten times the limit.
    for _ in 0..100 {
        if ws.send(Message::text("still here")).await.is_err() {
            return;
        }
        match next(&mut ws).await {
            Some(Ok(Message::Text(_))) => {}
            None | Some(Err(_)) => return,
            Some(Ok(message)) => panic!("unexpected {message:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the connection outlived its max duration tenfold");
}

#[tokio::test]
async fn an_open_websocket_ends_when_the_gateway_shuts_down() {
    let (_upstream, gw) = chat(&[]).await;
    let mut ws = routed(&gw, "/svc/chat/ws", "probe").await;
    ws.send(Message::text("ping")).await.unwrap();
    assert!(matches!(next(&mut ws).await, Some(Ok(Message::Text(_)))));

    // The gateway waits for its splices, which end at once at shutdown.
    tokio::time::timeout(WAIT, gw.stop())
        .await
        .expect("the gateway stops within the bound")
        .unwrap();
    match next(&mut ws).await {
        None | Some(Err(_)) => {}
        Some(Ok(message)) => panic!("expected the end, got {message:?}"),
    }
}

#[tokio::test]
async fn the_metrics_show_open_websockets_and_their_bytes() {
    let (_upstream, gw) = chat(&[]).await;
    let mut ws = routed(&gw, "/svc/chat/ws", "probe").await;
    let message = "x".repeat(1000);
    ws.send(Message::text(message.clone())).await.unwrap();
    assert!(matches!(next(&mut ws).await, Some(Ok(Message::Text(_)))));

    // One recorder per process: other tests' WebSockets may add to these.
    let exposed = metrics(&gw).await;
    assert!(
        value(&exposed, "gateway_websocket_connections") >= 1.0,
        "{exposed}"
    );
    assert!(
        value(
            &exposed,
            r#"gateway_websocket_upgrades_total{result="switched"}"#
        ) >= 1.0
    );
    assert!(exposed.contains(r#"gateway_websocket_upgrades_total{result="refused"}"#));

    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = next(&mut ws).await {}
    // Each way: the 1000-byte message and its frame header (plus the
    // client's mask upstream), then the close frames.
    assert!(
        eventually(WAIT, || async {
            let exposed = metrics(&gw).await;
            value(
                &exposed,
                r#"gateway_websocket_bytes_total{direction="upstream"}"#,
            ) >= 1000.0
                && value(
                    &exposed,
                    r#"gateway_websocket_bytes_total{direction="downstream"}"#,
                ) >= 1000.0
        })
        .await,
        "{}",
        metrics(&gw).await
    );
}

/// The value of the series `series` (name and labels as exposed) in `metrics`, 0 when absent.
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_second_instance_without_the_switch_is_not_asked_to_upgrade() {
    // Both instances of one service: only the one with `websocket=true`
    // gets the upgrade headers; the other answers a plain GET.
    let prefix = prefix();
    let ws_upstream = websocket_echo().await;
    let plain = echo("plain").await;
    let registry = Registry::new(&redis().url(), &prefix);
    register(&registry, "mixed", "ws-1", ws_upstream.service.addr, true).await;
    registry
        .register_at("mixed", "plain-1", plain.addr, HealthStatus::Passing)
        .await;
    let gw = gateway(&redis().url(), &prefix, &[]).await;
    let mut switched = 0;
    let mut plain_answers = 0;
    let alice = token("alice", "");
    for _ in 0..200 {
        match connect(&gw, "/svc/mixed/ws", Some(&alice)).await {
            Ok(ws) => {
                switched += 1;
                drop(ws);
            }
            Err(tungstenite::Error::Http(response)) => match response.status().as_u16() {
                200 => plain_answers += 1,
                404 => tokio::time::sleep(Duration::from_millis(25)).await,
                other => panic!("unexpected {other}"),
            },
            Err(other) => panic!("handshake failed: {other}"),
        }
        if switched > 0 && plain_answers > 0 {
            break;
        }
    }
    assert!(
        switched > 0 && plain_answers > 0,
        "{switched} {plain_answers}"
    );
}
