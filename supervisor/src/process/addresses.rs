//! Listen addresses the host does not have yet (`cluster.addresses`). An
//! address is on the host when a socket can be bound to it; one the kernel
//! refuses (EADDRNOTAVAIL) is added to the configured interface through
//! netlink, as a host address (/32, or /128 without duplicate address
//! detection so that it is usable at once), before the supervisor binds
//! it, and removed again when no agent uses it any more (a reload) or at
//! shutdown. Only the addresses added here are ever removed: one that was
//! there before (set up by hand, or left behind by a supervisor that was
//! killed) is used as it is. Loopback, wildcard and multicast addresses
//! are never added. Nothing is asked of netlink (nor of the interface, nor
//! of CAP_NET_ADMIN) while no address is missing.
//!
//! It is handed addresses and knows nothing of the fleet.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;

use agentcluster_conf::plural_es;
use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressHeaderFlags, AddressMessage};
use rtnetlink::{AddressMessageBuilder, Handle, LinkDummy};
use tokio::sync::Mutex;

/// Why listen addresses could not be added.
#[derive(Debug, thiserror::Error)]
#[error("cluster.addresses: {0}")]
pub struct AddressError(String);

/// Whether `ip` is never added: loopback (127.0.0.0/8 and ::1 are always
/// there), wildcard and multicast addresses.
pub fn needs_nothing(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || ip.is_multicast()
}

/// Whether a socket can be bound to `ip`: the address is on the host (or
/// bind fails for another reason, which the bind itself will report).
pub fn on_host(ip: IpAddr) -> bool {
    match UdpSocket::bind(SocketAddr::new(ip, 0)) {
        Ok(_) => true,
        Err(e) => e.raw_os_error() != Some(libc::EADDRNOTAVAIL),
    }
}

/// The addresses of `ips` that are missing on the host and would be added,
/// sorted, without repeats.
pub fn missing(ips: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
    let ips: BTreeSet<IpAddr> = ips.into_iter().filter(|ip| !needs_nothing(*ip)).collect();
    ips.into_iter().filter(|ip| !on_host(*ip)).collect()
}

/// `ips` for a log line or a message: the first ten, then how many more.
pub fn list(ips: &[IpAddr]) -> String {
    const SHOWN: usize = 10;
    let mut s = ips
        .iter()
        .take(SHOWN)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if ips.len() > SHOWN {
        s += &format!(" and {} more", ips.len() - SHOWN);
    }
    s
}

/// The addresses this supervisor added, and how to add more: shared by the
/// start (which adds the fleet's and removes them all at the end) and the
/// reloads (which add and remove as agents come and go). Without
/// `cluster.addresses` it adds nothing.
#[derive(Clone, Default)]
pub struct HostAddresses(Option<Arc<Mutex<Inner>>>);

struct Inner {
    interface: String,
    create: bool,
    /// Opened at the first address to add.
    link: Option<Link>,
    /// What was added here, so what is removed here.
    added: BTreeSet<IpAddr>,
}

/// The netlink connection and the interface it adds to.
struct Link {
    handle: Handle,
    connection: tokio::task::JoinHandle<()>,
    index: u32,
    /// The interface was created here (a dummy link), and is deleted at
    /// the end.
    created: bool,
}

impl HostAddresses {
    /// Adds to `interface` (created as a dummy link when absent, if
    /// `create`); `None`: adds nothing.
    pub fn new(config: Option<(&str, bool)>) -> Self {
        HostAddresses(config.map(|(interface, create)| {
            Arc::new(Mutex::new(Inner {
                interface: interface.to_string(),
                create,
                link: None,
                added: BTreeSet::new(),
            }))
        }))
    }

    /// The interface addresses are added to, if any.
    pub async fn interface(&self) -> Option<String> {
        Some(self.0.as_ref()?.lock().await.interface.clone())
    }

    /// Adds each address of `wanted` that is missing on the host; returns
    /// those it added now, sorted. On an error, what was added before it
    /// stays added (and known, so [`HostAddresses::release`] removes it).
    pub async fn ensure(
        &self,
        wanted: impl IntoIterator<Item = IpAddr>,
    ) -> Result<Vec<IpAddr>, AddressError> {
        let Some(inner) = &self.0 else {
            return Ok(Vec::new());
        };
        let mut inner = inner.lock().await;
        // One bind per address: for a big fleet, off the caller's thread
        // (a reload runs on the supervisor's loop).
        let wanted: Vec<IpAddr> = wanted
            .into_iter()
            .filter(|ip| !inner.added.contains(ip))
            .collect();
        let missing = tokio::task::spawn_blocking(move || missing(wanted))
            .await
            .map_err(|e| AddressError(format!("the address check failed: {e}")))?;
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        inner.open().await?;
        let mut now = Vec::with_capacity(missing.len());
        for ip in missing {
            match inner.add(ip).await {
                Ok(true) => now.push(ip),
                Ok(false) => {}
                Err(e) => {
                    if !now.is_empty() {
                        tracing::info!(
                            interface = %inner.interface,
                            "added {} before the error: {}",
                            plural_es(now.len(), "address"),
                            list(&now)
                        );
                    }
                    return Err(e);
                }
            }
        }
        if !now.is_empty() {
            tracing::info!(
                interface = %inner.interface,
                "added {} missing on this host: {}",
                plural_es(now.len(), "listen address"),
                list(&now)
            );
        }
        Ok(now)
    }

    /// Removes the addresses added here that `wanted` no longer holds;
    /// returns them. A failure is logged (the address stays).
    pub async fn keep_only(&self, wanted: &BTreeSet<IpAddr>) -> Vec<IpAddr> {
        let Some(inner) = &self.0 else {
            return Vec::new();
        };
        let mut inner = inner.lock().await;
        let gone: Vec<IpAddr> = inner.added.difference(wanted).copied().collect();
        inner.remove(&gone).await
    }

    /// Removes every address added here (and the interface, if it was
    /// created here); returns the addresses. Failures are logged.
    pub async fn release(&self) -> Vec<IpAddr> {
        let Some(inner) = &self.0 else {
            return Vec::new();
        };
        let mut inner = inner.lock().await;
        let all: Vec<IpAddr> = inner.added.iter().copied().collect();
        let removed = inner.remove(&all).await;
        if let Some(link) = inner.link.take() {
            if link.created {
                match link.handle.link().del(link.index).execute().await {
                    Ok(()) => tracing::info!(interface = %inner.interface, "deleted the interface"),
                    Err(e) => tracing::warn!(
                        interface = %inner.interface,
                        cause = %io_error(e),
                        "cannot delete the interface created at the start"
                    ),
                }
            }
            link.connection.abort();
        }
        removed
    }
}

impl Inner {
    /// Connects to netlink and finds the interface, creating it if asked.
    async fn open(&mut self) -> Result<&Link, AddressError> {
        if self.link.is_none() {
            self.link = Some(self.connect().await?);
        }
        self.link
            .as_ref()
            .ok_or_else(|| AddressError("no netlink connection".into()))
    }

    async fn connect(&self) -> Result<Link, AddressError> {
        let name = &self.interface;
        let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| {
            let why = if e.raw_os_error() == Some(libc::EAFNOSUPPORT) {
                " (under systemd, RestrictAddressFamilies= must allow AF_NETLINK)"
            } else {
                ""
            };
            AddressError(format!("cannot open a netlink socket: {e}{why}"))
        })?;
        let connection = tokio::spawn(connection);
        let lookup = |e: rtnetlink::Error| {
            AddressError(format!(
                "cannot look up interface `{name}`: {}",
                io_error(e)
            ))
        };
        let mut created = false;
        let index = match link_index(&handle, name).await.map_err(lookup)? {
            Some(index) => index,
            None if !self.create => {
                connection.abort();
                return Err(AddressError(format!(
                    "interface `{name}` does not exist: create it (ip link add {name} type dummy), \
                     name an existing interface such as lo, or set `create: true` to have it created"
                )));
            }
            None => {
                let made = handle
                    .link()
                    .add(LinkDummy::new(name).up().build())
                    .execute()
                    .await;
                if let Err(e) = made {
                    connection.abort();
                    let cause = io_error(e);
                    let why = match cause.raw_os_error() {
                        Some(libc::EOPNOTSUPP) => {
                            " (this kernel has no dummy interfaces: its `dummy` module is missing)"
                        }
                        Some(libc::EPERM) => " (that needs CAP_NET_ADMIN)",
                        _ => "",
                    };
                    return Err(AddressError(format!(
                        "cannot create the dummy interface `{name}`: {cause}{why}: \
                         create the interface yourself, or name an existing one such as lo"
                    )));
                }
                created = true;
                tracing::info!(interface = %name, "created a dummy interface");
                link_index(&handle, name)
                    .await
                    .map_err(lookup)?
                    .ok_or_else(|| {
                        AddressError(format!("interface `{name}` vanished once created"))
                    })?
            }
        };
        Ok(Link {
            handle,
            connection,
            index,
            created,
        })
    }

    /// Adds `ip` as a host address; false if it was there already (then
    /// it is not ours, and never removed).
    async fn add(&mut self, ip: IpAddr) -> Result<bool, AddressError> {
        let link = self.open().await?;
        let mut request = link.handle.address().add(link.index, ip, host_prefix(ip));
        if ip.is_ipv6() {
            // Usable at once: without this, bind fails (EADDRNOTAVAIL)
            // until duplicate address detection is over.
            request.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        match request.execute().await.map_err(io_error) {
            Ok(()) => {
                self.added.insert(ip);
                tracing::debug!(address = %ip, interface = %self.interface, "added address");
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            Err(e) => {
                let what = if e.raw_os_error() == Some(libc::EPERM) {
                    ": the supervisor needs CAP_NET_ADMIN (run it as root, or give it the \
                     capability: AmbientCapabilities=CAP_NET_ADMIN under systemd), or add the \
                     addresses yourself"
                } else {
                    ""
                };
                Err(AddressError(format!(
                    "cannot add {ip}/{} to interface `{}`: {e}{what}",
                    host_prefix(ip),
                    self.interface
                )))
            }
        }
    }

    /// Removes `ips` (added here); returns those removed or already gone.
    async fn remove(&mut self, ips: &[IpAddr]) -> Vec<IpAddr> {
        let Some(link) = &self.link else {
            return Vec::new();
        };
        let mut removed = Vec::with_capacity(ips.len());
        for &ip in ips {
            let result = link
                .handle
                .address()
                .del(host_address(link.index, ip))
                .execute()
                .await
                .map_err(io_error);
            match result {
                Ok(()) => removed.push(ip),
                // Someone removed it already.
                Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => removed.push(ip),
                Err(e) => {
                    tracing::warn!(address = %ip, interface = %self.interface, cause = %e, "cannot remove an address added at the start");
                    continue;
                }
            }
            self.added.remove(&ip);
        }
        if !removed.is_empty() {
            tracing::info!(
                interface = %self.interface,
                "removed {} added for agents: {}",
                plural_es(removed.len(), "address"),
                list(&removed)
            );
        }
        removed
    }
}

/// Every address on the host's interfaces with its prefix length
/// (`127.0.0.1/8`, `192.0.2.10/24`…): the ranges a node says it can bind
/// when `cluster.etcd.serves` is not set.
#[cfg(feature = "etcd")]
pub async fn host_ranges() -> Result<Vec<String>, AddressError> {
    use rtnetlink::packet_route::address::AddressAttribute;
    let (connection, handle, _) = rtnetlink::new_connection()
        .map_err(|e| AddressError(format!("cannot open a netlink socket: {e}")))?;
    let connection = tokio::spawn(connection);
    let mut found = Vec::new();
    let mut list = handle.address().get().execute();
    let result = loop {
        match list.try_next().await {
            Ok(Some(m)) => {
                let len = m.header.prefix_len;
                for a in &m.attributes {
                    if let AddressAttribute::Address(ip) = a {
                        found.push(format!("{ip}/{len}"));
                    }
                }
            }
            Ok(None) => break Ok(found),
            Err(e) => {
                break Err(AddressError(format!(
                    "cannot list the host's addresses: {}",
                    io_error(e)
                )));
            }
        }
    };
    connection.abort();
    let mut ranges = result?;
    ranges.sort();
    ranges.dedup();
    Ok(ranges)
}

/// The index of interface `name`; `None` if there is none.
async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, rtnetlink::Error> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(rtnetlink::Error::NetlinkError(e))
            if e.to_io().raw_os_error() == Some(libc::ENODEV) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// /32 or /128: the address alone, no route to a network with it.
fn host_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// The netlink message naming host address `ip` on interface `index`.
fn host_address(index: u32, ip: IpAddr) -> AddressMessage {
    match ip {
        IpAddr::V4(v4) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(v4, 32)
            .build(),
        IpAddr::V6(v6) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(v6, 128)
            .build(),
    }
}

/// A netlink error as the errno it carries.
fn io_error(e: rtnetlink::Error) -> std::io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => std::io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_wildcard_and_multicast_need_nothing() {
        for s in [
            "127.0.0.1",
            "127.3.2.1",
            "::1",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "ff02::1",
        ] {
            assert!(needs_nothing(ip(s)), "{s}");
        }
        for s in ["10.1.2.3", "192.0.2.1", "fd00::1", "2001:db8::1"] {
            assert!(!needs_nothing(ip(s)), "{s}");
        }
    }

    #[test]
    fn missing_leaves_out_what_needs_nothing_and_what_is_there() {
        // 192.0.2.0/24 and 2001:db8::/32 are for documentation: on no host.
        let wanted = [
            "127.0.0.1",
            "192.0.2.7",
            "0.0.0.0",
            "2001:db8::7",
            "192.0.2.7",
            "192.0.2.3",
        ]
        .map(ip);
        assert_eq!(
            missing(wanted),
            ["192.0.2.3", "192.0.2.7", "2001:db8::7"].map(ip)
        );
        assert!(on_host(ip("127.0.0.1")));
        assert!(!on_host(ip("192.0.2.7")));
    }

    #[test]
    fn lists_are_cut_after_ten() {
        let ips: Vec<IpAddr> = (1..=12).map(|i| ip(&format!("10.0.0.{i}"))).collect();
        assert_eq!(list(&ips[..2]), "10.0.0.1, 10.0.0.2");
        assert!(
            list(&ips).ends_with("10.0.0.10 and 2 more"),
            "{}",
            list(&ips)
        );
    }

    #[test]
    fn host_addresses_are_slash_32_and_slash_128() {
        assert_eq!(host_prefix(ip("10.0.0.1")), 32);
        assert_eq!(host_prefix(ip("fd00::1")), 128);
        let m = host_address(7, ip("fd00::1"));
        assert_eq!((m.header.index, m.header.prefix_len), (7, 128));
    }

    #[tokio::test]
    async fn without_the_setting_nothing_is_added() {
        let none = HostAddresses::new(None);
        assert_eq!(
            none.ensure([ip("192.0.2.1")]).await.unwrap(),
            Vec::<IpAddr>::new()
        );
        assert!(none.release().await.is_empty());
        assert_eq!(none.interface().await, None);
    }

    #[tokio::test]
    async fn nothing_missing_asks_nothing_of_netlink() {
        // The interface does not exist, and is never looked up.
        let a = HostAddresses::new(Some(("ac-absent0", false)));
        assert_eq!(
            a.ensure([ip("127.0.0.1"), ip("::")]).await.unwrap(),
            Vec::<IpAddr>::new()
        );
        assert!(a.release().await.is_empty());
    }
}
