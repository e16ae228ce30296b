//! Endpoint host names to addresses, through the system's resolver or the nameservers of the
//! `resolver` section (hickory): all at once when a generation is compiled (load, reload), and
//! host by host from the refresh task (`process::dns`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use futures_util::future::join_all;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use crate::config::{Resolver, ServiceConfig};

/// Resolved addresses by host name, or why a host has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses(BTreeMap<String, Result<IpAddr, String>>);

impl Addresses {
    /// Records what `host` resolved to.
    pub fn insert(&mut self, host: String, found: Result<IpAddr, String>) {
        self.0.insert(host, found);
    }

    /// Records `ip` for `host` unless it resolved already: a host that has none, or whose
    /// lookup failed, keeps its last good address.
    pub fn fill(&mut self, host: &str, ip: IpAddr) {
        let entry = self.0.entry(host.to_string()).or_insert(Ok(ip));
        if entry.is_err() {
            *entry = Ok(ip);
        }
    }

    /// The address of `host`: itself when it is an IP literal, else what it resolved to.
    pub fn get(&self, host: &str) -> Result<IpAddr, String> {
        if let Some(ip) = literal(host) {
            return Ok(ip);
        }
        match self.0.get(host) {
            Some(found) => found.clone(),
            None => Err("not resolved".into()),
        }
    }
}

/// `host` as an IP address, when it is one (`[::1]` included): nothing to resolve.
pub fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The host names a config resolves: those of endpoints without a fixed `address` that are not
/// IP literals.
pub fn hosts(config: &ServiceConfig) -> BTreeSet<String> {
    config
        .pools
        .values()
        .flat_map(|p| &p.endpoints)
        .filter(|e| e.address.is_none() && literal(&e.host).is_none())
        .map(|e| e.host.clone())
        .collect()
}

/// The address to use among those DNS `found`: the `current` one while it is still listed (a
/// rotating multi-address answer must not move new connections at each refresh), else the
/// first.
pub fn choose(current: Option<IpAddr>, found: &[IpAddr]) -> Option<IpAddr> {
    match current {
        Some(c) if found.contains(&c) => Some(c),
        _ => found.first().copied(),
    }
}

/// Asks for the addresses of host names, the way the `resolver` section says.
pub struct Lookup {
    dns: Option<TokioResolver>,
}

impl Lookup {
    /// A lookup for `settings`: its nameservers, else the system's resolver.
    pub fn new(settings: &Resolver) -> Result<Lookup, String> {
        if settings.nameservers.is_empty() {
            return Ok(Lookup { dns: None });
        }
        let mut config = ResolverConfig::default();
        for ns in &settings.nameservers {
            config.add_name_server(name_server(ns.0));
        }
        let mut opts = ResolverOpts::default();
        opts.timeout = settings.timeout;
        opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        // The nameservers are the source of truth, as with nginx's and HAProxy's resolvers.
        opts.use_hosts_file = ResolveHosts::Never;
        // Each refresh asks again: the refresh interval, not the record's TTL, says how stale
        // an address may be (nginx's `valid=`).
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        let dns = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| format!("resolver: {e}"))?;
        Ok(Lookup { dns: Some(dns) })
    }

    /// Every address `host` has now, in the order given. Never blocks the calling thread: the
    /// system's resolver runs on tokio's blocking pool.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let found = match &self.dns {
            Some(dns) => dns
                .lookup_ip(host)
                .await
                .map(|l| l.iter().collect::<Vec<_>>())
                .map_err(|e| e.to_string())?,
            None => {
                let name = host.to_string();
                tokio::task::spawn_blocking(move || system_lookup(&name))
                    .await
                    .map_err(|e| format!("lookup task failed: {e}"))??
            }
        };
        if found.is_empty() {
            return Err("no address".into());
        }
        Ok(found)
    }
}

/// One nameserver at `addr`, over UDP with TCP for truncated answers.
fn name_server(addr: SocketAddr) -> NameServerConfig {
    use hickory_resolver::config::ConnectionConfig;
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
}

fn system_lookup(host: &str) -> Result<Vec<IpAddr>, String> {
    (host, 0)
        .to_socket_addrs()
        .map(|it| it.map(|a| a.ip()).collect())
        .map_err(|e| e.to_string())
}

/// Resolves every host of `config` now, blocking the calling thread until all have answered
/// (at load and on reload, off the async threads); `current` gives the address each host has
/// in the generation being replaced, kept while DNS still lists it.
pub fn resolve_all(config: &ServiceConfig, current: impl Fn(&str) -> Option<IpAddr>) -> Addresses {
    let hosts: Vec<String> = hosts(config).into_iter().collect();
    let mut out = Addresses::default();
    if hosts.is_empty() {
        return out;
    }
    let settings = config.resolver.clone();
    let names = hosts.clone();
    // A runtime of its own, on a thread of its own: the caller may be inside another runtime.
    let answers = std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("resolver runtime: {e}"))?;
            rt.block_on(async move {
                let lookup = Lookup::new(&settings)?;
                Ok::<_, String>(join_all(names.iter().map(|h| lookup.lookup(h))).await)
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the resolver thread panicked".into()))
    });
    match answers {
        Ok(answers) => {
            for (host, found) in hosts.into_iter().zip(answers) {
                let chosen = found.and_then(|ips| {
                    choose(current(&host), &ips).ok_or_else(|| "no address".to_string())
                });
                out.insert(host, chosen);
            }
        }
        Err(e) => {
            for host in hosts {
                out.insert(host, Err(e.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_current_address_stays_while_listed_else_the_first_is_taken() {
        let found = [ip("10.0.0.2"), ip("10.0.0.3")];
        assert_eq!(choose(Some(ip("10.0.0.3")), &found), Some(ip("10.0.0.3")));
        assert_eq!(choose(Some(ip("10.0.0.9")), &found), Some(ip("10.0.0.2")));
        assert_eq!(choose(None, &found), Some(ip("10.0.0.2")));
        assert_eq!(choose(Some(ip("10.0.0.2")), &[]), None);
    }

    #[test]
    fn literals_need_no_lookup_and_unknown_hosts_say_so() {
        let mut a = Addresses::default();
        assert_eq!(a.get("127.0.0.1"), Ok(ip("127.0.0.1")));
        assert_eq!(a.get("[::1]"), Ok(ip("::1")));
        assert!(a.get("x.test").is_err());
        a.insert("x.test".into(), Ok(ip("10.1.1.1")));
        assert_eq!(a.get("x.test"), Ok(ip("10.1.1.1")));
    }

    #[test]
    fn only_names_without_a_fixed_address_are_resolved() {
        let cfg = crate::config::parse_str(
            "listeners: [{ address: \"127.0.0.1:8080\" }]\npools:\n  p:\n    kind: app\n    endpoints:\n      - { url: \"http://127.0.0.1:5000\" }\n      - { url: \"http://a.test:5000\" }\n      - { url: \"http://b.test:5000\", address: \"127.0.0.1:5001\" }\nroutes: [{ path: /, pool: p }]\n",
        )
        .unwrap();
        let hosts: Vec<String> = hosts(&cfg.service).into_iter().collect();
        assert_eq!(hosts, ["a.test"]);
    }
}
