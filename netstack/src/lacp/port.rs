//! One member's LACP actor: the receive, periodic, mux, transmit and churn
//! machines of 802.1AX clause 6.4, the marker responder and the counters.
//! Selection across members lives in [`super::Lacp`], which sets
//! [`LacpPort::selected`] and passes the aggregate `ready` condition in.

use smoltcp::time::{Duration, Instant};

use super::churn::{ChurnMachine, ChurnState};
use super::{
    AGGREGATE_WAIT_TIME, FAST_PERIODIC_TIME, LONG_TIMEOUT_TIME, LacpConfig, LacpMode, LacpRate,
    MAX_TX_PER_PERIOD, PortConfig, SHORT_TIMEOUT_TIME, SLOW_PERIODIC_TIME,
};
use crate::wire::{
    LacpState, LacpduRepr, MarkerKind, MarkerRepr, PortInfo, SlowPdu, WireError, emit_slow_frame,
    slow_frame_len,
};

/// The receive machine's state (802.1AX figure 6-18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxState {
    /// No carrier: nothing is received, the partner is out of sync.
    PortDisabled,
    /// The partner's information timed out once; one more timeout defaults it.
    Expired,
    /// No partner: the administrative defaults stand in for one.
    Defaulted,
    /// The partner's information is fresh.
    Current,
}

/// The coupled-control mux machine's state (802.1AX figure 6-22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxState {
    Detached,
    /// Selected; waiting [`AGGREGATE_WAIT_TIME`] for the other members.
    Waiting,
    /// Attached to the aggregator and in sync, but the partner is not yet.
    Attached,
    /// Carrying traffic in both directions.
    CollectingDistributing,
}

/// What the selection logic decided for the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selected {
    Unselected,
    Selected,
    /// Belongs with another aggregator than the bond's active one.
    Standby,
}

/// Per-member counters, in the spirit of OVS `lacp/show-stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Well-formed LACPDUs received.
    pub rx: u64,
    /// LACPDUs sent.
    pub tx: u64,
    /// Slow-protocol frames that did not parse.
    pub bad: u64,
    /// Marker PDUs received (Information and Response).
    pub marker_rx: u64,
    /// Marker Responses sent.
    pub marker_tx: u64,
    /// Times the partner's information timed out (CURRENT to EXPIRED).
    pub expired: u64,
    /// Times the port fell back to defaulted partner information.
    pub defaulted: u64,
    /// LACPDUs that came back from this very system.
    pub loopback: u64,
    pub actor_churn: u64,
    pub partner_churn: u64,
}

/// One member's LACP state machines.
#[derive(Debug, Clone)]
pub struct LacpPort {
    config: PortConfig,
    rate: LacpRate,
    actor: PortInfo,
    partner: PortInfo,
    enabled: bool,
    rx: RxState,
    current_while: Option<Instant>,
    periodic_at: Option<Instant>,
    periodic_time: Duration,
    pub(crate) selected: Selected,
    mux: MuxState,
    wait_while: Option<Instant>,
    ntt: bool,
    /// When the last [`MAX_TX_PER_PERIOD`] LACPDUs left, oldest at `tx_next`.
    tx_times: [Option<Instant>; MAX_TX_PER_PERIOD],
    tx_next: usize,
    actor_churn: ChurnMachine,
    partner_churn: ChurnMachine,
    marker_reply: Option<MarkerRepr>,
    looped: bool,
    counters: PortCounters,
}

/// The partner a port assumes without LACPDUs: nobody, out of sync, so such
/// a port never carries traffic (no fallback to an individual link). It asks
/// for the short timeout so that an active port keeps offering a PDU every
/// second and a partner that comes back is found at once, not after 30 s.
const PARTNER_ADMIN: PortInfo = PortInfo {
    system_priority: 0,
    system: crate::MacAddress([0; 6]),
    key: 0,
    port_priority: 0,
    port: 0,
    state: LacpState(LacpState::TIMEOUT),
};

impl LacpPort {
    /// A port with no carrier yet (receive machine in PORT_DISABLED).
    pub fn new(bond: &LacpConfig, config: PortConfig) -> Self {
        let mut state = LacpState(LacpState::AGGREGATION | LacpState::DEFAULTED);
        state.set(LacpState::ACTIVITY, bond.mode == LacpMode::Active);
        state.set(LacpState::TIMEOUT, bond.rate == LacpRate::Fast);
        LacpPort {
            config,
            rate: bond.rate,
            actor: PortInfo {
                system_priority: bond.system_priority,
                system: bond.system,
                key: bond.key,
                port_priority: config.priority,
                port: config.number,
                state,
            },
            partner: PARTNER_ADMIN,
            enabled: false,
            rx: RxState::PortDisabled,
            current_while: None,
            periodic_at: None,
            periodic_time: FAST_PERIODIC_TIME,
            selected: Selected::Unselected,
            mux: MuxState::Detached,
            wait_while: None,
            ntt: false,
            tx_times: [None; MAX_TX_PER_PERIOD],
            tx_next: 0,
            actor_churn: ChurnMachine::new(),
            partner_churn: ChurnMachine::new(),
            marker_reply: None,
            looped: false,
            counters: PortCounters::default(),
        }
    }

    pub fn config(&self) -> &PortConfig {
        &self.config
    }
    /// What this port tells the partner about itself.
    pub fn actor(&self) -> &PortInfo {
        &self.actor
    }
    /// What this port knows about its partner.
    pub fn partner(&self) -> &PortInfo {
        &self.partner
    }
    pub fn rx_state(&self) -> RxState {
        self.rx
    }
    pub fn mux_state(&self) -> MuxState {
        self.mux
    }
    pub fn selected(&self) -> Selected {
        self.selected
    }
    pub fn counters(&self) -> &PortCounters {
        &self.counters
    }
    pub fn enabled(&self) -> bool {
        self.enabled
    }
    /// Whether the last LACPDU received came from this very system.
    pub fn looped(&self) -> bool {
        self.looped
    }
    pub fn actor_churn(&self) -> ChurnState {
        self.actor_churn.state()
    }
    pub fn partner_churn(&self) -> ChurnState {
        self.partner_churn.state()
    }
    /// Whether frames received on this member go up the stack.
    pub fn is_collecting(&self) -> bool {
        self.mux == MuxState::CollectingDistributing
    }
    /// Whether the bond may send traffic on this member.
    pub fn is_distributing(&self) -> bool {
        self.mux == MuxState::CollectingDistributing
    }

    /// Carrier changed. Losing it detaches the port at once: it stops
    /// collecting and distributing before any timeout.
    pub fn on_carrier(&mut self, now: Instant, up: bool) {
        if up == self.enabled {
            return;
        }
        self.enabled = up;
        if up {
            self.enter_expired(now);
            // Introduce ourselves now rather than at the first periodic tick.
            self.ntt = true;
        } else {
            self.rx = RxState::PortDisabled;
            self.partner.state.set(LacpState::SYNCHRONIZATION, false);
            self.current_while = None;
            self.periodic_at = None;
            self.selected = Selected::Unselected;
            self.looped = false;
            self.marker_reply = None;
            self.enter_detached();
        }
    }

    /// A slow-protocols payload arrived on this member.
    pub fn on_slow_protocols(&mut self, now: Instant, payload: &[u8]) -> Result<(), WireError> {
        match SlowPdu::parse(payload) {
            Ok(SlowPdu::Lacp(pdu)) => {
                self.on_pdu(now, &pdu);
                Ok(())
            }
            Ok(SlowPdu::Marker(marker)) => {
                self.on_marker(&marker);
                Ok(())
            }
            Err(e) => {
                self.counters.bad += 1;
                Err(e)
            }
        }
    }

    /// A LACPDU arrived (the receive machine's CURRENT state).
    pub fn on_pdu(&mut self, now: Instant, pdu: &LacpduRepr) {
        if !self.enabled {
            return;
        }
        self.counters.rx += 1;
        if pdu.actor.system == self.actor.system
            && pdu.actor.system_priority == self.actor.system_priority
        {
            // Our own PDU came back: the link loops to this host.
            self.counters.loopback += 1;
            self.looped = true;
            return;
        }
        self.looped = false;
        // update_Selected: a different partner port means a different aggregator.
        if !pdu.actor.same_port(&self.partner) {
            self.selected = Selected::Unselected;
        }
        // update_NTT: tell the partner if its view of us is out of date.
        const ECHOED: u8 = LacpState::ACTIVITY
            | LacpState::TIMEOUT
            | LacpState::SYNCHRONIZATION
            | LacpState::AGGREGATION;
        if !pdu.partner.same_port(&self.actor)
            || (pdu.partner.state.0 ^ self.actor.state.0) & ECHOED != 0
        {
            self.ntt = true;
        }
        self.record_pdu(pdu);
        self.rx = RxState::Current;
        self.actor.state.set(LacpState::EXPIRED, false);
        let timeout = if self.actor.state.has(LacpState::TIMEOUT) {
            SHORT_TIMEOUT_TIME
        } else {
            LONG_TIMEOUT_TIME
        };
        self.current_while = Some(now + timeout);
    }

    /// recordPDU: take the partner's word for itself, and decide whether it
    /// is in sync with us.
    fn record_pdu(&mut self, pdu: &LacpduRepr) {
        let a = pdu.actor.state;
        let sees_us = pdu.partner.same_port(&self.actor);
        let individual = !a.has(LacpState::AGGREGATION);
        let someone_active = a.has(LacpState::ACTIVITY)
            || (self.actor.state.has(LacpState::ACTIVITY)
                && pdu.partner.state.has(LacpState::ACTIVITY));
        self.partner = pdu.actor;
        self.partner.state.set(
            LacpState::SYNCHRONIZATION,
            a.has(LacpState::SYNCHRONIZATION) && (sees_us || individual) && someone_active,
        );
        self.actor.state.set(LacpState::DEFAULTED, false);
    }

    /// A Marker PDU arrived: answer Information, count both kinds.
    pub fn on_marker(&mut self, marker: &MarkerRepr) {
        if !self.enabled {
            return;
        }
        self.counters.marker_rx += 1;
        if marker.kind == MarkerKind::Information {
            self.marker_reply = Some(marker.response());
        }
    }

    /// Receive machine EXPIRED: the partner is out of sync and, until it
    /// speaks, assumed to want fast PDUs.
    fn enter_expired(&mut self, now: Instant) {
        if self.rx == RxState::Current {
            self.counters.expired += 1;
        }
        self.rx = RxState::Expired;
        self.partner.state.set(LacpState::SYNCHRONIZATION, false);
        self.partner.state.set(LacpState::TIMEOUT, true);
        self.actor.state.set(LacpState::EXPIRED, true);
        self.current_while = Some(now + SHORT_TIMEOUT_TIME);
    }

    /// Receive machine DEFAULTED: no partner; administrative values stand in.
    fn enter_defaulted(&mut self) {
        self.counters.defaulted += 1;
        self.rx = RxState::Defaulted;
        if !self.partner.same_port(&PARTNER_ADMIN) {
            self.selected = Selected::Unselected;
        }
        self.partner = PARTNER_ADMIN;
        self.actor.state.set(LacpState::DEFAULTED, true);
        self.actor.state.set(LacpState::EXPIRED, false);
        self.current_while = None;
    }

    /// Runs the receive timers. Called by the bond before selection.
    pub(crate) fn poll_receive(&mut self, now: Instant) {
        if !self.enabled || self.current_while.is_none_or(|t| now < t) {
            return;
        }
        match self.rx {
            RxState::Current => self.enter_expired(now),
            RxState::Expired => self.enter_defaulted(),
            RxState::PortDisabled | RxState::Defaulted => self.current_while = None,
        }
    }

    /// Whether this port has a partner the selection logic can group by.
    ///
    /// Only fresh partner information counts. 802.1AX keeps an EXPIRED port
    /// selected, so it stays ATTACHED and keeps telling the partner it is in
    /// sync: a partner that still hears us (a link broken in one direction)
    /// then keeps sending on it until we default, 6 s at the fast rate.
    /// Treating expiry like a carrier loss detaches the port after 3 s and
    /// the partner stops at once; the price is the aggregate wait when the
    /// partner is heard again.
    pub(crate) fn has_partner(&self) -> bool {
        self.enabled
            && !self.looped
            && self.rx == RxState::Current
            && self.partner.system != PARTNER_ADMIN.system
    }

    /// Whether the port is through its aggregate wait (802.1AX `Ready_N`).
    pub(crate) fn waited(&self, now: Instant) -> bool {
        self.mux == MuxState::Waiting && self.wait_while.is_some_and(|t| now >= t)
    }

    /// Runs the mux machine to a stable state; `ready` is the aggregator's
    /// Ready (every waiting member has waited).
    pub(crate) fn poll_mux(&mut self, now: Instant, ready: bool) {
        // Each state is visited at most once per call, so four steps settle it.
        for _ in 0..4 {
            let selected = self.selected == Selected::Selected;
            let partner_sync = self.partner.state.has(LacpState::SYNCHRONIZATION);
            match self.mux {
                MuxState::Detached if self.selected != Selected::Unselected => {
                    self.mux = MuxState::Waiting;
                    self.wait_while = Some(now + AGGREGATE_WAIT_TIME);
                }
                MuxState::Waiting if self.selected == Selected::Unselected => self.enter_detached(),
                MuxState::Waiting if selected && ready && self.waited(now) => self.enter_attached(),
                MuxState::Attached if !selected => self.enter_detached(),
                MuxState::Attached if partner_sync => {
                    self.mux = MuxState::CollectingDistributing;
                    self.set_collecting_distributing(true);
                    self.ntt = true;
                }
                MuxState::CollectingDistributing if !selected || !partner_sync => {
                    self.enter_attached()
                }
                _ => break,
            }
        }
    }

    fn enter_detached(&mut self) {
        self.mux = MuxState::Detached;
        self.wait_while = None;
        self.actor.state.set(LacpState::SYNCHRONIZATION, false);
        self.set_collecting_distributing(false);
        self.ntt = true;
    }

    fn enter_attached(&mut self) {
        self.mux = MuxState::Attached;
        self.wait_while = None;
        self.actor.state.set(LacpState::SYNCHRONIZATION, true);
        self.set_collecting_distributing(false);
        self.ntt = true;
    }

    fn set_collecting_distributing(&mut self, on: bool) {
        self.actor
            .state
            .set(LacpState::COLLECTING | LacpState::DISTRIBUTING, on);
    }

    /// Whether the periodic machine runs: carrier, and someone active.
    fn periodic_enabled(&self) -> bool {
        self.enabled
            && (self.actor.state.has(LacpState::ACTIVITY)
                || self.partner.state.has(LacpState::ACTIVITY))
    }

    /// Runs the periodic, churn and transmit machines, sending through `tx`.
    pub(crate) fn poll_transmit(&mut self, now: Instant, tx: &mut impl FnMut(&[u8])) {
        self.poll_periodic(now);
        if self.actor_churn.update(
            now,
            self.enabled,
            self.actor.state.has(LacpState::SYNCHRONIZATION),
        ) {
            self.counters.actor_churn += 1;
        }
        if self.partner_churn.update(
            now,
            self.enabled,
            self.partner.state.has(LacpState::SYNCHRONIZATION),
        ) {
            self.counters.partner_churn += 1;
        }
        let mut frame = [0u8; slow_frame_len()];
        if let Some(reply) = self.marker_reply.take()
            && emit_slow_frame(self.config.mac, &SlowPdu::Marker(reply), &mut frame).is_ok()
        {
            tx(&frame);
            self.counters.marker_tx += 1;
        }
        if !self.ntt || !self.periodic_enabled() || self.tx_blocked_until(now).is_some() {
            return;
        }
        let pdu = SlowPdu::Lacp(LacpduRepr {
            actor: self.actor,
            partner: self.partner,
            collector_max_delay: 0,
        });
        if emit_slow_frame(self.config.mac, &pdu, &mut frame).is_ok() {
            tx(&frame);
            self.counters.tx += 1;
            self.ntt = false;
            self.tx_times[self.tx_next] = Some(now);
            self.tx_next = (self.tx_next + 1) % MAX_TX_PER_PERIOD;
        }
    }

    /// The periodic machine: NTT every fast or slow period, following the
    /// partner's Timeout bit; a partner that switches to short timeouts gets
    /// a PDU at once rather than at the end of a slow period.
    fn poll_periodic(&mut self, now: Instant) {
        if !self.periodic_enabled() {
            self.periodic_at = None;
            return;
        }
        let period = if self.partner.state.has(LacpState::TIMEOUT) {
            FAST_PERIODIC_TIME
        } else {
            SLOW_PERIODIC_TIME
        };
        let speed_up = period < self.periodic_time;
        self.periodic_time = period;
        match self.periodic_at {
            None => self.periodic_at = Some(now + period),
            Some(at) if now >= at || speed_up => {
                self.ntt = true;
                self.periodic_at = Some(now + period);
            }
            Some(_) => {}
        }
    }

    /// When the rate limit next allows a LACPDU, if it forbids one now.
    fn tx_blocked_until(&self, now: Instant) -> Option<Instant> {
        let oldest = self.tx_times[self.tx_next]?;
        let free = oldest + FAST_PERIODIC_TIME;
        (now < free).then_some(free)
    }

    /// The earliest time any of this port's machines needs a poll.
    pub(crate) fn deadline(&self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.current_while);
        consider(self.periodic_at);
        consider(self.wait_while);
        consider(self.actor_churn.deadline());
        consider(self.partner_churn.deadline());
        if self.marker_reply.is_some() {
            consider(Some(now));
        }
        if self.ntt && self.periodic_enabled() {
            consider(Some(self.tx_blocked_until(now).unwrap_or(now)));
        }
        next
    }

    /// Changes the actor key (bond reconfiguration); the port reselects.
    pub(crate) fn set_key(&mut self, key: u16) {
        if self.actor.key != key {
            self.actor.key = key;
            self.selected = Selected::Unselected;
            self.ntt = true;
        }
    }

    /// The rate this port asks of its partner.
    pub fn rate(&self) -> LacpRate {
        self.rate
    }
}
