//! The VIP addresses this device holds on its public interface, through rtnetlink. Only
//! the addresses ballast added are ever removed: they are kept in a file of the data
//! directory (and marked with their own address protocol where the kernel keeps one), so
//! the operator's addresses are never touched and a restart finds what a previous run
//! left.
//!
//! Every VIP address carries a lifetime (`valid_lft`) that ends with this device's lease
//! (rounded up to the second) and is pushed forward as the lease is renewed: if the agent
//! dies while the host keeps running, the kernel itself removes the VIPs about when the
//! lease lapses, instead of answering for them forever beside their new owner.
use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use futures::TryStreamExt;
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressProtocol, CacheInfo,
};
use rtnetlink::Handle;

/// The address protocol ballast marks its VIPs with (`ip -d addr` shows it).
const PROTO_BALLAST: u8 = 0xba;

pub struct Addresses {
    handle: Handle,
    pub iface: String,
    index: u32,
    record: PathBuf,
    held: BTreeSet<IpAddr>,
}

fn read_record(path: &Path) -> BTreeSet<IpAddr> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

impl Addresses {
    /// Opens rtnetlink for `iface`; `record` is the file of the addresses ballast holds.
    pub async fn open(iface: &str, record: PathBuf) -> Result<Addresses> {
        let (conn, handle, _) = rtnetlink::new_connection().context("opening rtnetlink")?;
        tokio::spawn(conn);
        let index = handle
            .link()
            .get()
            .match_name(iface.to_string())
            .execute()
            .try_next()
            .await
            .with_context(|| format!("interface {iface}"))?
            .with_context(|| format!("no interface {iface}"))?
            .header
            .index;
        let mut a = Addresses { handle, iface: iface.to_string(), index, record, held: BTreeSet::new() };
        // Ours: what the record names, and what carries our mark (a record lost with the
        // data directory still leaves marked addresses behind).
        // Only what is on the interface counts as held (after a reboot the record names
        // addresses the kernel no longer has: they must be added again, not skipped).
        let (present, marked) = a.present().await?;
        let mut held: BTreeSet<IpAddr> = read_record(&a.record).intersection(&present).copied().collect();
        held.extend(marked);
        a.held = held;
        a.save()?;
        Ok(a)
    }

    /// The addresses on the interface, and those of them that carry ballast's address
    /// protocol.
    async fn present(&self) -> Result<(BTreeSet<IpAddr>, BTreeSet<IpAddr>)> {
        let (mut all, mut marked) = (BTreeSet::new(), BTreeSet::new());
        let mut dump = self.handle.address().get().set_link_index_filter(self.index).execute();
        while let Some(m) = dump.try_next().await.context("listing addresses")? {
            let ours = m.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Protocol(AddressProtocol::Other(PROTO_BALLAST)))
            });
            for a in &m.attributes {
                if let AddressAttribute::Local(ip) | AddressAttribute::Address(ip) = a {
                    all.insert(*ip);
                    if ours {
                        marked.insert(*ip);
                    }
                }
            }
        }
        Ok((all, marked))
    }

    /// The addresses ballast holds (as far as its record says).
    pub fn held(&self) -> &BTreeSet<IpAddr> {
        &self.held
    }

    fn save(&self) -> Result<()> {
        let text: String = self.held.iter().map(|a| format!("{a}\n")).collect();
        let tmp = self.record.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.record).with_context(|| format!("writing {}", self.record.display()))
    }

    /// Adds `vip` as a host address (/32, /128; no duplicate address detection, so it
    /// serves at once) that the kernel removes after `lifetime_s` seconds unless renewed.
    /// One that is there already gets the new lifetime (this is also the renewal).
    pub async fn add(&mut self, vip: IpAddr, lifetime_s: u32) -> Result<()> {
        let len = if vip.is_ipv4() { 32 } else { 128 };
        if self.held.insert(vip) {
            self.save()?;
        }
        let mut req = self.handle.address().add(self.index, vip, len).replace();
        let m = req.message_mut();
        m.header.flags |= AddressHeaderFlags::Nodad;
        m.attributes.push(AddressAttribute::Protocol(AddressProtocol::Other(PROTO_BALLAST)));
        let mut life = CacheInfo::default();
        life.ifa_preferred = lifetime_s;
        life.ifa_valid = lifetime_s;
        m.attributes.push(AddressAttribute::CacheInfo(life));
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            Err(e) => Err(anyhow::anyhow!("adding {vip} on {}: {e}", self.iface)),
        }
    }

    /// Removes `vip` if ballast holds it. One that is gone already counts as removed.
    pub async fn remove(&mut self, vip: IpAddr) -> Result<()> {
        if !self.held.contains(&vip) {
            return Ok(());
        }
        let mut m = AddressMessage::default();
        m.header.family = if vip.is_ipv4() {
            netlink_packet_route::AddressFamily::Inet
        } else {
            netlink_packet_route::AddressFamily::Inet6
        };
        m.header.prefix_len = if vip.is_ipv4() { 32 } else { 128 };
        m.header.index = self.index;
        m.attributes.push(AddressAttribute::Local(vip));
        if vip.is_ipv6() {
            m.attributes.clear();
            m.attributes.push(AddressAttribute::Address(vip));
        }
        match self.handle.address().del(m).execute().await {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(e))
                if [-libc::EADDRNOTAVAIL, -libc::ENOENT, -libc::ENODEV].contains(&e.raw_code()) => {}
            Err(e) => return Err(anyhow::anyhow!("removing {vip} from {}: {e}", self.iface)),
        }
        self.held.remove(&vip);
        self.save()
    }
}
