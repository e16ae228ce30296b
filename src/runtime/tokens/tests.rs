use std::time::Duration;

use asrs_emulator::token::{audience, sign};
use pingora_memory_cache::CacheStatus;

use super::*;
use crate::config::{self, PoolConfig};
use crate::runtime::Pool;
use crate::signalr::AffinityInput;

fn pool_config(yaml: &str) -> PoolConfig {
    let file: config::Pool = serde_yaml::from_str(yaml).unwrap();
    config::check_pool("p", &file).unwrap()
}

/// Instances a and b with keys, c given by URL only; extra audience `shared.example`.
const POOL: &str = "kind: signalr
endpoints:
  - { connection_string: \"Endpoint=https://a.example;AccessKey=key-a;Version=1.0;\", address: 127.0.0.1:1 }
  - { connection_string: \"Endpoint=https://b.example;AccessKey=key-b;Version=1.0;\", address: 127.0.0.1:2 }
  - { url: https://c.example, address: 127.0.0.1:3 }
tokens: { verify: true, clock_skew: 5s, audiences: [Shared.Example] }";

fn pool(yaml: &str, previous: Option<&Pool>) -> Pool {
    Pool::compile("p", &pool_config(yaml), previous, &Default::default()).unwrap()
}

fn token(key: &str, host: &str, hub: &str) -> String {
    sign(key, &audience(host, hub), None, Duration::from_secs(600))
}

/// The pool's verdict on `token` sent as a bearer header with query `query`.
fn check(p: &Pool, token: Option<&str>, query: &str) -> Result<(), TokenRefusal> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let input = AffinityInput::new(Some(query), auth.as_deref().map(str::as_bytes), None);
    p.check_token(&input, Some(query))
}

fn invalid(e: TokenError) -> Result<(), TokenRefusal> {
    Err(TokenRefusal::Invalid(e))
}

fn gate(p: &Pool) -> &TokenGate {
    p.tokens.as_ref().unwrap()
}

#[test]
fn each_token_verifies_with_the_key_of_the_instance_it_names() {
    let p = pool(POOL, None);
    assert_eq!(
        check(&p, Some(&token("key-a", "a.example", "chat")), "hub=chat"),
        Ok(())
    );
    assert_eq!(
        check(&p, Some(&token("key-b", "b.example", "Chat")), "hub=CHAT"),
        Ok(())
    );
    // b's audience signed with a's key, a host outside the pool, another hub, no hub.
    let a_for_b = token("key-a", "b.example", "chat");
    assert_eq!(
        check(&p, Some(&a_for_b), "hub=chat"),
        invalid(TokenError::Signature)
    );
    let elsewhere = token("key-a", "z.example", "chat");
    assert_eq!(
        check(&p, Some(&elsewhere), "hub=chat"),
        invalid(TokenError::UnknownAudience)
    );
    let chat = token("key-a", "a.example", "chat");
    assert_eq!(
        check(&p, Some(&chat), "hub=admin"),
        invalid(TokenError::Hub)
    );
    assert_eq!(check(&p, Some(&chat), "id=x"), invalid(TokenError::Hub));
    assert_eq!(check(&p, None, "hub=chat"), Err(TokenRefusal::Missing));
    assert_eq!(
        check(&p, Some("garbage"), "hub=chat"),
        invalid(TokenError::Malformed)
    );
    // The token in the query (SSE, browser WebSockets) counts as in the header.
    let q = format!("hub=chat&access_token={chat}");
    let input = AffinityInput::new(Some(&q), None, None);
    assert_eq!(p.check_token(&input, Some(&q)), Ok(()));
}

#[test]
fn endpoints_without_key_are_not_verified_and_shared_audiences_use_any_key() {
    let p = pool(POOL, None);
    // c came as a URL: whatever signed the token, the edge cannot tell.
    assert_eq!(
        check(
            &p,
            Some(&token("anything", "c.example", "chat")),
            "hub=chat"
        ),
        Ok(())
    );
    // shared.example is no instance: any key of the pool verifies its tokens, others do not.
    assert_eq!(
        check(
            &p,
            Some(&token("key-b", "shared.example", "chat")),
            "hub=chat"
        ),
        Ok(())
    );
    assert_eq!(
        check(
            &p,
            Some(&token("key-z", "shared.example", "chat")),
            "hub=chat"
        ),
        invalid(TokenError::Signature)
    );
    // A pool that does not verify lets everything through, tokens or not.
    let off = pool(&POOL.replace("verify: true", "verify: false"), None);
    assert!(off.tokens.is_none());
    assert_eq!(check(&off, None, "hub=chat"), Ok(()));
    assert_eq!(check(&off, Some("garbage"), "hub=chat"), Ok(()));
}

#[test]
fn verified_tokens_are_cached_and_a_hit_still_checks_the_hub() {
    let p = pool(POOL, None);
    let t = token("key-a", "a.example", "chat");
    assert_eq!(gate(&p).cache.get(t.as_str()).1, CacheStatus::Miss);
    assert_eq!(check(&p, Some(&t), "hub=chat"), Ok(()));
    assert_eq!(gate(&p).cache.get(t.as_str()).1, CacheStatus::Hit);
    assert_eq!(check(&p, Some(&t), "hub=chat&id=1"), Ok(()));
    assert_eq!(
        check(&p, Some(&t), "hub=admin&id=1"),
        invalid(TokenError::Hub)
    );
    // Refused and unverifiable tokens are not remembered.
    for t in [
        token("key-z", "a.example", "chat"),
        token("any", "c.example", "chat"),
    ] {
        let _ = check(&p, Some(&t), "hub=chat");
        assert_eq!(gate(&p).cache.get(t.as_str()).1, CacheStatus::Miss);
    }
}

#[test]
fn a_cache_entry_lives_until_exp_plus_skew() {
    let p = pool(POOL, None);
    let g = gate(&p);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let verified = |exp| Verified {
        hub: "chat".into(),
        exp,
    };
    // Expired beyond the 5 s skew: not remembered at all.
    g.remember("old", verified(now - 60));
    assert_eq!(g.cache.get("old").1, CacheStatus::Miss);
    // Within the skew: remembered for what is left of it.
    g.remember("fresh", verified(now + 3600));
    assert_eq!(g.cache.get("fresh").1, CacheStatus::Hit);
    g.remember("forever", verified(u64::MAX));
    assert_eq!(g.cache.get("forever").1, CacheStatus::Hit);
}

#[test]
fn a_reload_starts_a_fresh_cache_and_retired_endpoints_keep_their_key() {
    let old = pool(POOL, None);
    let (a, b) = (
        token("key-a", "a.example", "chat"),
        token("key-b", "b.example", "chat"),
    );
    assert_eq!(check(&old, Some(&a), "hub=chat"), Ok(()));
    assert_eq!(check(&old, Some(&b), "hub=chat"), Ok(()));
    // The reload removes b and gives a a new key.
    let yaml = POOL
        .lines()
        .filter(|l| !l.contains("b.example"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("key-a", "key-a2");
    let new = pool(&yaml, Some(&old));
    assert_eq!(new.retired.len(), 1);
    assert_eq!(gate(&new).cache.get(a.as_str()).1, CacheStatus::Miss);
    assert_eq!(
        check(&new, Some(&a), "hub=chat"),
        invalid(TokenError::Signature)
    );
    let a2 = token("key-a2", "a.example", "chat");
    assert_eq!(check(&new, Some(&a2), "hub=chat"), Ok(()));
    // b's connections outlive the reload: its tokens still verify, with its own key only.
    assert_eq!(check(&new, Some(&b), "hub=chat"), Ok(()));
    let forged = token("key-a2", "b.example", "chat");
    assert_eq!(
        check(&new, Some(&forged), "hub=chat"),
        invalid(TokenError::Signature)
    );
}
