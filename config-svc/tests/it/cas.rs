//! Compare-and-swap under concurrency: no lost update, ever.

use crate::common::{etag, key_url, put, start};
use mcp_testkit::{prefix, redis};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_writers_with_the_same_if_match_one_wins() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    assert_eq!(put(&http, &svc, "app", "k", json!(0)).await.status(), 201);
    let url = key_url(&svc, "app", "k");
    let writers: Vec<_> = (0..50)
        .map(|n| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                http.put(url)
                    .header("if-match", "\"1\"")
                    .json(&json!({"value": n}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for writer in writers {
        statuses.push(writer.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1);
    assert_eq!(statuses.iter().filter(|s| **s == 412).count(), 49);
    let current = http.get(&url).send().await.unwrap();
    assert_eq!(etag(&current), "\"2\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_doing_fifty_increments_each_end_at_one_thousand() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    assert_eq!(
        put(&http, &svc, "app", "counter", json!(0)).await.status(),
        201
    );
    let url = key_url(&svc, "app", "counter");
    let clients: Vec<_> = (0..20)
        .map(|i: u64| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let mut done = 0;
                // Jittered exponential backoff after a conflict, as real clients do.
                let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ (i + 1);
                let mut conflicts = 0u32;
                // Bounded: far more attempts than contention can need.
                for _ in 0..100_000 {
                    if done == 50 {
                        break;
                    }
                    let read = http.get(&url).send().await.unwrap();
                    let tag = etag(&read);
                    let n = read.json::<Value>().await.unwrap()["value"]
                        .as_u64()
                        .unwrap();
                    let write = http
                        .put(&url)
                        .header("if-match", tag)
                        .json(&json!({"value": n + 1}))
                        .send()
                        .await
                        .unwrap();
                    match write.status().as_u16() {
                        200 => {
                            done += 1;
                            conflicts = 0;
                        }
                        412 => {
                            conflicts = (conflicts + 1).min(5);
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            let micros = seed % (2000 << conflicts);
                            tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
                        }
                        other => panic!("unexpected status {other}"),
                    }
                }
                done
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.await.unwrap(), 50);
    }
    let last: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(last["value"], 1000);
    assert_eq!(last["version"], 1001);
}
