//! gRPC through the gateway, with an unmodified gRPC client (tonic's
//! channel, HTTP/2 with prior knowledge to the gateway's plain listener)
//! calling `/echo.Greeter/…` as it would call the server itself. The
//! upstream is a real gRPC server (tonic's server core over axum, h2c) on
//! 127.0.0.1:0, registered with `protocol=h2c` and
//! `grpc_services=echo.Greeter`, which is how the gateway finds it.

use std::{collections::BTreeMap, convert::Infallible, pin::Pin, time::Duration};

use axum::{Router, body::Body, extract::Request};
use futures_util::{Stream, future::BoxFuture, stream};
use http::uri::PathAndQuery;
use mcp_testkit::{TestService, prefix, redis};
use tonic::{Code, Status, transport::Channel};
use tonic_prost::ProstCodec;

use crate::common::{self, Registry, bearer, gateway};

/// `echo.Hello`.
#[derive(Clone, PartialEq, prost::Message)]
struct Hello {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(uint32, tag = "2")]
    count: u32,
}

/// `echo.Reply`.
#[derive(Clone, PartialEq, prost::Message)]
struct Reply {
    #[prost(string, tag = "1")]
    text: String,
    /// The `x-auth-subject` the upstream got from the gateway.
    #[prost(string, tag = "2")]
    subject: String,
}

const SAY: &str = "/echo.Greeter/Say";
const COUNT: &str = "/echo.Greeter/Count";

/// `Say`: a greeting; `name` "missing" is a NOT_FOUND, "slow" answers after 2 s.
#[derive(Clone)]
struct Say;

impl tonic::server::UnaryService<Hello> for Say {
    type Response = Reply;
    type Future = BoxFuture<'static, Result<tonic::Response<Reply>, Status>>;

    fn call(&mut self, request: tonic::Request<Hello>) -> Self::Future {
        let subject = request
            .metadata()
            .get("x-auth-subject")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let hello = request.into_inner();
        Box::pin(async move {
            match hello.name.as_str() {
                "missing" => Err(Status::not_found("no such greeting")),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Ok(tonic::Response::new(Reply::default()))
                }
                name => Ok(tonic::Response::new(Reply {
                    text: format!("hello {name}"),
                    subject,
                })),
            }
        })
    }
}

type Replies = Pin<Box<dyn Stream<Item = Result<Reply, Status>> + Send>>;

/// `Count`: `count` replies; for `name` "short", a RESOURCE_EXHAUSTED after
/// them (so the status travels in trailers, after data).
#[derive(Clone)]
struct Count;

impl tonic::server::ServerStreamingService<Hello> for Count {
    type Response = Reply;
    type ResponseStream = Replies;
    type Future = BoxFuture<'static, Result<tonic::Response<Replies>, Status>>;

    fn call(&mut self, request: tonic::Request<Hello>) -> Self::Future {
        let hello = request.into_inner();
        let replies = (0..hello.count).map(|i| {
            Ok(Reply {
                text: i.to_string(),
                subject: String::new(),
            })
        });
        let end = (hello.name == "short").then(|| Err(Status::resource_exhausted("enough")));
        let replies: Replies = Box::pin(stream::iter(replies.chain(end)));
        Box::pin(async move { Ok(tonic::Response::new(replies)) })
    }
}

/// The gRPC upstream: tonic's server core behind axum routes (h2c: axum's
/// server speaks HTTP/2 with prior knowledge).
async fn greeter() -> TestService {
    let say = tower::service_fn(|request: Request| async move {
        let mut grpc = tonic::server::Grpc::new(ProstCodec::<Reply, Hello>::default());
        Ok::<_, Infallible>(grpc.unary(Say, request).await.map(Body::new))
    });
    let count = tower::service_fn(|request: Request| async move {
        let mut grpc = tonic::server::Grpc::new(ProstCodec::<Reply, Hello>::default());
        Ok::<_, Infallible>(grpc.server_streaming(Count, request).await.map(Body::new))
    });
    common::upstream(
        Router::new()
            .route_service(SAY, say)
            .route_service(COUNT, count),
    )
    .await
}

/// A gateway (a breaker that opens at the first failure, so a miscounted
/// failure shows) and the greeter registered behind it as service `greeter`.
async fn arranged(extra: &[&str]) -> (TestService, TestService) {
    let prefix = prefix();
    let upstream = greeter().await;
    let mut flags = vec!["--cb-failure-threshold", "1"];
    flags.extend_from_slice(extra);
    let gw = gateway(&redis().url(), &prefix, &flags).await;
    let mut instance = mcp_testkit::registry::instance_at("greeter", "g-1", upstream.addr);
    instance.metadata = BTreeMap::from([
        ("protocol".to_owned(), "h2c".to_owned()),
        ("grpc_services".to_owned(), "echo.Greeter".to_owned()),
    ]);
    Registry::new(&redis().url(), &prefix)
        .register(&instance)
        .await;
    (gw, upstream)
}

/// An unmodified gRPC client of the gateway.
async fn client(gateway: &TestService) -> tonic::client::Grpc<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(gateway.url.clone())
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

/// A call's request: `hello`, with `token` as its bearer when given.
fn request(hello: Hello, token: Option<&str>) -> tonic::Request<Hello> {
    let mut request = tonic::Request::new(hello);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", bearer(token).parse().unwrap());
    }
    request
}

fn hello(name: &str, count: u32) -> Hello {
    Hello {
        name: name.to_owned(),
        count,
    }
}

/// `Say` through the gateway.
async fn say(
    client: &mut tonic::client::Grpc<Channel>,
    request: tonic::Request<Hello>,
) -> Result<Reply, Status> {
    client.ready().await.unwrap();
    client
        .unary(
            request,
            PathAndQuery::from_static(SAY),
            ProstCodec::<Hello, Reply>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}

/// Wait (bounded) until the gateway routes `echo.Greeter` (its routing
/// table follows the registry), then the first successful reply.
async fn routed(client: &mut tonic::client::Grpc<Channel>, token: &str) -> Reply {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match say(client, request(hello("world", 0), Some(token))).await {
            Ok(reply) => return reply,
            Err(status) if tokio::time::Instant::now() > deadline => {
                panic!("echo.Greeter never became routable: {status:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

#[tokio::test]
async fn a_unary_call_passes_with_the_callers_identity() {
    let (gw, _upstream) = arranged(&[]).await;
    let mut client = client(&gw).await;
    let reply = routed(&mut client, &common::token("alice", "")).await;
    assert_eq!(reply.text, "hello world");
    assert_eq!(reply.subject, "alice", "the upstream got X-Auth-Subject");

    // The upstream's own error status passes as it came, and is the
    // service's answer: no breaker failure (the threshold is 1).
    let status = say(
        &mut client,
        request(hello("missing", 0), Some(&common::token("alice", ""))),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no such greeting");
    let again = say(
        &mut client,
        request(hello("again", 0), Some(&common::token("alice", ""))),
    )
    .await
    .unwrap();
    assert_eq!(again.text, "hello again");
}

#[tokio::test]
async fn a_server_stream_passes_whole_with_its_trailers() {
    let (gw, _upstream) = arranged(&[]).await;
    let mut client = client(&gw).await;
    let token = common::token("alice", "");
    routed(&mut client, &token).await;

    let stream_of = |name: &str, count: u32| {
        let mut client = client.clone();
        let request = request(hello(name, count), Some(&token));
        async move {
            client.ready().await.unwrap();
            let mut stream = client
                .server_streaming(
                    request,
                    PathAndQuery::from_static(COUNT),
                    ProstCodec::<Hello, Reply>::default(),
                )
                .await
                .unwrap()
                .into_inner();
            let mut texts = Vec::new();
            let end = loop {
                match stream.message().await {
                    Ok(Some(reply)) => texts.push(reply.text),
                    Ok(None) => break Ok(()),
                    Err(status) => break Err(status),
                }
            };
            (texts, end)
        }
    };
    // `grpc-status: 0` arrives in the trailers after five messages.
    let (texts, end) = stream_of("full", 5).await;
    assert_eq!(texts, ["0", "1", "2", "3", "4"]);
    assert!(end.is_ok(), "{end:?}");
    // An error status after data can only travel in trailers.
    let (texts, end) = stream_of("short", 3).await;
    assert_eq!(texts, ["0", "1", "2"]);
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.message(), "enough");
}

#[tokio::test]
async fn the_gateways_own_errors_are_grpc_errors() {
    let (gw, _upstream) = arranged(&["--rate-limit-rps", "1", "--rate-limit-burst", "3"]).await;
    let mut client = client(&gw).await;
    routed(&mut client, &common::token("alice", "")).await;

    // No token: UNAUTHENTICATED, in a trailers-only answer a gRPC client reads.
    let status = say(&mut client, request(hello("world", 0), None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(!status.message().is_empty());

    // A rate-limited caller: RESOURCE_EXHAUSTED (a burst of 3; bounded to 20 calls).
    let token = common::token("bob", "");
    let mut limited = None;
    for _ in 0..20 {
        if let Err(status) = say(&mut client, request(hello("b", 0), Some(&token))).await {
            limited = Some(status);
            break;
        }
    }
    let status = limited.expect("a burst of 3 ran out within 20 calls");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

#[tokio::test]
async fn grpc_timeout_is_the_deadline_and_no_breaker_failure() {
    let (gw, _upstream) = arranged(&[]).await;
    let mut client = client(&gw).await;
    let token = common::token("alice", "");
    routed(&mut client, &token).await;

    // tonic's channel enforces a timeout set on the request itself, racing
    // the gateway; this call is written by hand (HTTP/2 with prior
    // knowledge, one length-prefixed message) so only the gateway's
    // deadline can end it.
    let mut message = vec![0u8];
    let encoded = prost::Message::encode_to_vec(&hello("slow", 0));
    message.extend_from_slice(&u32::try_from(encoded.len()).unwrap().to_be_bytes());
    message.extend_from_slice(&encoded);
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let call = http::Request::post(gw.at(SAY))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "200m")
        .header("authorization", bearer(&token))
        .body(http_body_util::Full::new(bytes::Bytes::from(message)))
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), h2.request(call))
        .await
        .expect("the gateway answers before the upstream's 2 s")
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
    // The client chose the deadline: the instance's circuit (threshold 1) stays closed.
    let reply = say(&mut client, request(hello("after", 0), Some(&token)))
        .await
        .unwrap();
    assert_eq!(reply.text, "hello after");
}

#[tokio::test]
async fn an_unknown_grpc_service_is_unimplemented() {
    let (gw, _upstream) = arranged(&[]).await;
    let mut client = client(&gw).await;
    let token = common::token("alice", "");
    routed(&mut client, &token).await;
    client.ready().await.unwrap();
    let status = client
        .unary(
            request(hello("x", 0), Some(&token)),
            PathAndQuery::from_static("/other.Service/Call"),
            ProstCodec::<Hello, Reply>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
}
