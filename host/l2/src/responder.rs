//! The responder: one raw (`AF_PACKET`) channel per interface that answers
//! ARP requests and Neighbor Solicitations for the VIPs this node owns
//! there, and announces a VIP it takes over with a burst of gratuitous ARPs
//! or unsolicited NAs. Nothing is ever sent for a VIP it does not own.
//!
//! ```text
//! Announcer::set(owned) ──► per interface: owned set (RwLock) ◄── reader thread (blocking rx, 100 ms timeout)
//!                      └──► burst task per newly owned VIP ──► tx (Mutex) ◄── answers
//! ```
//!
//! The reader is a plain thread: pnet's receiver blocks, and a thread per
//! interface is cheap beside what it saves in latency.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use herald_core::l2::InterfaceName;
use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender};

use crate::Error;
use crate::frame::{self, Mac, Question};
use crate::interfaces::{self, Interface};

/// When the announcements of a newly owned VIP go out, from taking
/// ownership: at once (clients switch within a round trip), then again
/// shortly after (a frame lost in a busy queue, or an answer the previous
/// owner sent in its last moments, is corrected), then over the next two
/// seconds for clients whose neighbour entry was being re-resolved.
pub const BURST: [Duration; 5] = [
    Duration::ZERO,
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(2000),
];

/// How long the reader waits for a frame before checking whether it
/// should stop: bounds how long a removed interface keeps its thread.
const READ_TIMEOUT: Duration = Duration::from_millis(100);

/// Answers ARP/NDP for the VIPs it is told to own.
#[derive(Default)]
pub struct Announcer {
    ports: BTreeMap<String, Port>,
}

/// One interface being answered on.
struct Port {
    owned: Arc<RwLock<BTreeSet<IpAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    link: Arc<Link>,
}

/// What sends on an interface.
struct Link {
    name: String,
    mac: Mac,
    tx: Mutex<Box<dyn DataLinkSender>>,
}

impl Link {
    fn send(&self, frame: &[u8]) {
        let result = match self.tx.lock() {
            Ok(mut tx) => tx.send_to(frame, None),
            Err(_) => return,
        };
        if let Some(Err(e)) = result {
            tracing::warn!(interface = %self.name, error = %e, "cannot send an ARP/NDP frame");
        }
    }

    fn announce(&self, vip: IpAddr) {
        self.send(&match vip {
            IpAddr::V4(v4) => frame::gratuitous_arp(self.mac, v4),
            IpAddr::V6(v6) => frame::unsolicited_na(self.mac, v6),
        });
    }
}

impl Announcer {
    /// An announcer answering for nothing.
    pub fn new() -> Announcer {
        Announcer::default()
    }

    /// Answers for exactly `owned` (each VIP with its advertisement's
    /// requested interfaces, empty for the default rule) from now on;
    /// announces the VIPs newly owned on an interface. Returns what could
    /// not be done (a VIP without an interface, an unknown interface, a
    /// raw socket refused); everything else is in effect.
    pub async fn set(&mut self, owned: &[(IpAddr, Vec<InterfaceName>)]) -> Vec<Error> {
        let mut errors = Vec::new();
        let mut wanted: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        if !owned.is_empty() {
            let system = interfaces::system::interfaces();
            let defaults = match interfaces::system::default_routes().await {
                Ok(d) => d,
                Err(e) => {
                    errors.push(e);
                    interfaces::DefaultRoutes::default()
                }
            };
            for (vip, requested) in owned {
                let choice = interfaces::choose(*vip, requested, &system, defaults);
                errors.extend(choice.errors);
                for name in choice.interfaces {
                    wanted.entry(name).or_default().insert(*vip);
                }
            }
            for name in wanted.keys() {
                if self.ports.contains_key(name) {
                    continue;
                }
                let Some(interface) = system.iter().find(|i| &i.name == name) else {
                    continue;
                };
                match Port::open(interface) {
                    Ok(port) => {
                        self.ports.insert(name.clone(), port);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        let gone: Vec<String> = self
            .ports
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(port) = self.ports.remove(&name) {
                port.close();
            }
        }
        for (name, port) in &self.ports {
            let vips = wanted.remove(name).unwrap_or_default();
            let added: Vec<IpAddr> = {
                let Ok(mut current) = port.owned.write() else {
                    continue;
                };
                for vip in current.difference(&vips) {
                    tracing::info!(%vip, interface = %name, "stopped answering");
                }
                let added = vips.difference(&current).copied().collect();
                *current = vips;
                added
            };
            for vip in added {
                tracing::info!(%vip, interface = %name, "answering and announcing");
                port.link.announce(vip);
                tokio::spawn(burst(port.link.clone(), port.owned.clone(), vip));
            }
        }
        for e in &errors {
            tracing::warn!(error = %e, "L2 announcement problem");
        }
        errors
    }

    /// The VIPs answered for on at least one interface.
    pub fn owned(&self) -> BTreeSet<IpAddr> {
        self.ports
            .values()
            .filter_map(|p| p.owned.read().ok().map(|s| s.clone()))
            .flatten()
            .collect()
    }

    /// Stops answering for everything.
    pub fn clear(&mut self) {
        for (_, port) in std::mem::take(&mut self.ports) {
            port.close();
        }
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The announcements after the first, while `vip` stays owned.
async fn burst(link: Arc<Link>, owned: Arc<RwLock<BTreeSet<IpAddr>>>, vip: IpAddr) {
    let start = tokio::time::Instant::now();
    for at in &BURST[1..] {
        tokio::time::sleep_until(start + *at).await;
        if !owned.read().is_ok_and(|s| s.contains(&vip)) {
            return;
        }
        link.announce(vip);
    }
}

impl Port {
    fn open(interface: &Interface) -> Result<Port, Error> {
        let Some(pnet) = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == interface.name)
        else {
            return Err(Error::UnknownInterface {
                vip: IpAddr::from([0, 0, 0, 0]),
                interface: interface.name.clone(),
            });
        };
        let config = pnet_datalink::Config {
            read_timeout: Some(READ_TIMEOUT),
            // Neighbor Solicitations go to a solicited-node multicast group
            // the kernel has not joined for a VIP it does not hold on this
            // interface; promiscuous mode lets them reach the socket on
            // every NIC (docs/l2.md, "Interfaces").
            promiscuous: true,
            ..pnet_datalink::Config::default()
        };
        let raw = |source| Error::RawSocket {
            interface: interface.name.clone(),
            source,
        };
        let (tx, rx) = match pnet_datalink::channel(&pnet, config) {
            Ok(Channel::Ethernet(tx, rx)) => (tx, rx),
            Ok(_) => {
                return Err(raw(std::io::Error::other("not an Ethernet channel")));
            }
            Err(e) => return Err(raw(e)),
        };
        let link = Arc::new(Link {
            name: interface.name.clone(),
            mac: interface.mac,
            tx: Mutex::new(tx),
        });
        let owned = Arc::new(RwLock::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (link, owned, stop) = (link.clone(), owned.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("l2-{}", interface.name))
                .spawn(move || read(rx, &link, &owned, &stop))
                .map_err(|e| Error::Io {
                    what: format!("starting the ARP/NDP reader of {}", interface.name),
                    source: e,
                })?
        };
        tracing::info!(interface = %interface.name, "ARP/NDP responder started");
        Ok(Port {
            owned,
            stop,
            thread: Some(thread),
            link,
        })
    }

    fn close(mut self) {
        if let Ok(mut owned) = self.owned.write() {
            for vip in owned.iter() {
                tracing::info!(%vip, interface = %self.link.name, "stopped answering");
            }
            owned.clear();
        }
        self.stop.store(true, Ordering::Relaxed);
        // The reader notices within READ_TIMEOUT; it is not joined so that
        // the async caller never blocks on it.
        drop(self.thread.take());
    }
}

/// The reader thread of one interface.
fn read(
    mut rx: Box<dyn DataLinkReceiver>,
    link: &Link,
    owned: &RwLock<BTreeSet<IpAddr>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let answer = match rx.next() {
            Ok(bytes) => answer(link.mac, bytes, owned),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                None
            }
            Err(e) => {
                tracing::warn!(interface = %link.name, error = %e, "reading frames failed");
                std::thread::sleep(READ_TIMEOUT);
                None
            }
        };
        if let Some(frame) = answer {
            link.send(&frame);
        }
    }
}

/// The answer to `bytes` if it asks about an owned VIP.
fn answer(mac: Mac, bytes: &[u8], owned: &RwLock<BTreeSet<IpAddr>>) -> Option<Vec<u8>> {
    let question = frame::parse(bytes)?;
    let asked = match question {
        Question::Arp {
            sender_mac, target, ..
        } if sender_mac != mac => IpAddr::V4(target),
        Question::Ns {
            sender_mac, target, ..
        } if sender_mac != mac => IpAddr::V6(target),
        _ => return None,
    };
    if !owned.read().ok()?.contains(&asked) {
        return None;
    }
    Some(match question {
        Question::Arp {
            sender_mac,
            sender_ip,
            target,
        } => frame::arp_reply(mac, target, sender_mac, sender_ip),
        Question::Ns {
            sender_mac,
            source,
            target,
        } => frame::neighbor_advertisement(mac, target, sender_mac, source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: Mac = [2, 0, 0, 0, 0, 0x11];

    #[test]
    fn only_owned_vips_are_answered_and_never_our_own_frames() {
        let owned = RwLock::new(BTreeSet::from(["192.0.2.200".parse().unwrap()]));
        let client = [2, 0, 0, 0, 0, 0x64];
        let ask = |sender: Mac, target: [u8; 4]| {
            let mut f = frame::arp_reply(sender, target.into(), sender, [192, 0, 2, 100].into());
            // Turn the reply into a request from `sender` for `target`.
            f[..6].copy_from_slice(&frame::BROADCAST);
            f[21] = 1;
            f[28..32].copy_from_slice(&[192, 0, 2, 100]);
            f[38..42].copy_from_slice(&target);
            f
        };
        let reply = answer(NODE, &ask(client, [192, 0, 2, 200]), &owned).expect("owned VIP");
        assert_eq!(&reply[..6], &client);
        assert_eq!(&reply[22..28], &NODE);
        assert_eq!(answer(NODE, &ask(client, [192, 0, 2, 201]), &owned), None);
        assert_eq!(answer(NODE, &ask(NODE, [192, 0, 2, 200]), &owned), None);
    }
}
