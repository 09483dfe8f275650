//! The management uplink changed at run time (`Bond.create`, `Bond.destroy`,
//! `Bond.set_mode`/`set_property`, and the API's bond made again at boot):
//! the uplink is rebuilt from its NICs and the spare ones while the switch,
//! the host interfaces and the VIFs stay (see
//! [`HostNetworks::replace_uplink_with`]).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use netstack::bond::MAX_MEMBERS;
use netstack::{HostNetworks, Nic, Uplink};
use smoltcp::time::Instant;

use super::networks::{NetworkError, Nics, make_bond, nic_index};
use crate::xenapi::UplinkSpec;

/// Makes the management uplink what `spec` says, from the NICs of the
/// uplink now and the spare ones; the management interface takes the
/// uplink's name. Nothing changes when a NIC is missing.
pub(super) fn set_uplink<N: Nic>(
    net: &mut HostNetworks<Uplink<N>>,
    nics: &mut Nics<N>,
    spec: &UplinkSpec,
    now: Instant,
) -> Result<(), NetworkError> {
    let (device, names): (&str, Vec<&str>) = match spec {
        UplinkSpec::Nic(nic) => (nic, alloc::vec![nic.as_str()]),
        UplinkSpec::Bond(bond) => (
            &bond.name,
            bond.members.iter().map(String::as_str).collect(),
        ),
    };
    let found = nics.uplink.len() + nics.spare.len();
    let mut wanted = Vec::new();
    for name in &names {
        let index = nic_index(name)
            .filter(|i| nics.uplink.contains(i) || nics.spare.contains_key(i))
            .filter(|i| !wanted.contains(i))
            .ok_or_else(|| NetworkError::NoSuchNic {
                name: String::from(*name),
                found,
            })?;
        wanted.push(index);
    }
    if matches!(spec, UplinkSpec::Bond(_)) && !(1..=MAX_MEMBERS).contains(&wanted.len()) {
        return Err(NetworkError::Bond(format!(
            "a bond takes 1 to {MAX_MEMBERS} NICs, {} given",
            wanted.len()
        )));
    }
    let built = net.replace_uplink_with(|old| {
        let mut pool = core::mem::take(&mut nics.spare);
        pool.extend(nics.uplink.iter().copied().zip(old.into_nics()));
        let members: Vec<N> = wanted.iter().filter_map(|i| pool.remove(i)).collect();
        nics.spare = pool;
        nics.uplink = wanted.clone();
        let uplink = match spec {
            UplinkSpec::Nic(_) => members.into_iter().next().map(Uplink::Nic),
            // The member count was checked: the bond cannot be refused.
            UplinkSpec::Bond(bond) => make_bond(bond, members, now)
                .ok()
                .map(|b| Uplink::Bond(Box::new(b))),
        };
        match uplink {
            Some(uplink) => (uplink, true),
            None => (Uplink::Detached, false),
        }
    });
    if !built {
        return Err(NetworkError::Bond(format!(
            "{device} could not be built: the host has no uplink now"
        )));
    }
    net.primary_mut().rename(device);
    Ok(())
}
