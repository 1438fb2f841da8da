//! The BFD session state machine of RFC 5880 §6.2 and §6.8, asynchronous
//! mode, sans IO: [`Input`]s in, [`Action`]s out. It never touches a
//! socket or a clock; the driver (`session.rs`) turns actions into UDP
//! sends and timers, and the unit tests below drive every transition.
//!
//! ```text
//!                          +--+
//!                          |  | UP, ADMIN DOWN, TIMER
//!                          |  V
//!                  DOWN  +------+  INIT
//!           +------------|      |------------+
//!           |            | DOWN |            |
//!           |  +-------->|      |<--------+  |
//!           |  |         +------+         |  |
//!           |  |                          |  |
//!           |  |               ADMIN DOWN,|  |
//!           |  |ADMIN DOWN,          DOWN,|  |
//!           |  |TIMER                TIMER|  |
//!           V  |                          |  V
//!         +------+                      +------+
//!    +----|      |                      |      |----+
//! DOWN|    | INIT |--------------------->|  UP  |    |INIT, UP
//!    +--->|      | INIT, UP             |      |<---+
//!         +------+                      +------+
//! ```
//!
//! Not supported, by choice: Demand mode (the D bit is never set and a
//! peer's D bit is ignored: Herald keeps sending periodically, which a
//! peer in Demand mode accepts), the Echo function (Required Min Echo RX
//! is 0, §6.8.9) and authentication (refused by [`crate::packet`]).

use std::time::Duration;

use crate::packet::{Diag, Packet, State};

/// The slowest a session transmits while not Up, and the least Desired
/// Min TX it advertises then (RFC 5880 §6.8.3: "not less than one
/// second").
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// A session's timer settings (RFC 5880 §6.8.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// bfd.DesiredMinTxInterval once Up.
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx: Duration,
    /// bfd.DetectMult (not 0).
    pub detect_mult: u8,
}

/// A session's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The timers.
    pub timers: Timers,
    /// bfd.LocalDiscr: unique among this system's sessions, not 0.
    pub local_discriminator: u32,
    /// The Passive role (RFC 5880 §6.1): send nothing until the peer is
    /// heard.
    pub passive: bool,
}

/// What happens to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// A packet that passed [`crate::packet::decode`] arrived.
    Packet(Packet),
    /// The transmit timer fired.
    TransmitTimer,
    /// The detection timer fired.
    DetectionTimer,
    /// The operator took the session down (RFC 5880 §6.8.16).
    AdminDown,
    /// The operator let the session run again.
    AdminUp,
    /// New timer settings (RFC 5880 §6.8.3, negotiated by a Poll Sequence
    /// while Up, §6.5).
    SetTimers(Timers),
}

/// What the driver must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this packet now.
    Send(Packet),
    /// (Re)arm the transmit timer to fire after this long.
    SetTransmitTimer(Duration),
    /// Stop the transmit timer.
    CancelTransmitTimer,
    /// (Re)arm the detection timer to fire after this long.
    SetDetectionTimer(Duration),
    /// Stop the detection timer.
    CancelDetectionTimer,
    /// The session changed state, for this reason.
    StateChanged {
        /// The old state.
        from: State,
        /// The new state.
        to: State,
        /// bfd.LocalDiag after the change.
        diag: Diag,
    },
}

/// Why a valid packet was still not for this session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Discard {
    /// Your Discriminator is not this session's (RFC 5880 §6.8.6).
    #[error("Your Discriminator {0:#x} is not this session's")]
    WrongDiscriminator(u32),
    /// The session is AdminDown (RFC 5880 §6.8.6).
    #[error("the session is AdminDown")]
    AdminDown,
}

/// One BFD session. `jitter` returns random numbers for the transmit
/// jitter (§6.8.7); tests pass a fixed sequence.
pub struct Fsm {
    config: Config,
    jitter: Box<dyn FnMut() -> u32 + Send>,
    state: State,
    local_diag: Diag,
    remote_state: State,
    remote_discriminator: u32,
    /// bfd.RemoteMinRxInterval, µs (1 until heard: RFC 5880 §6.8.1).
    remote_min_rx: u32,
    /// The peer's Desired Min TX, µs.
    remote_desired_min_tx: u32,
    remote_detect_mult: u8,
    /// The timers in use for transmission and detection; during a Poll
    /// Sequence they may lag behind the advertised ones (§6.8.3).
    tx_in_use: Duration,
    rx_in_use: Duration,
    /// A Poll Sequence is running: every packet carries P until one with
    /// F arrives.
    polling: bool,
}

impl std::fmt::Debug for Fsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fsm")
            .field("state", &self.state)
            .field("local_diag", &self.local_diag)
            .field("remote_discriminator", &self.remote_discriminator)
            .field("polling", &self.polling)
            .finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Fsm {
    /// A session in Down (RFC 5880 §6.8.1 initial values); call
    /// [`Fsm::start`] for the first actions.
    pub fn new(config: Config, jitter: Box<dyn FnMut() -> u32 + Send>) -> Fsm {
        Fsm {
            config,
            jitter,
            state: State::Down,
            local_diag: Diag::NONE,
            remote_state: State::Down,
            remote_discriminator: 0,
            remote_min_rx: 1,
            remote_desired_min_tx: 0,
            remote_detect_mult: 0,
            tx_in_use: SLOW_TX.max(config.timers.desired_min_tx),
            rx_in_use: config.timers.required_min_rx,
            polling: false,
        }
    }

    /// The session state.
    pub fn state(&self) -> State {
        self.state
    }

    /// bfd.RemoteSessionState: the state in the peer's last packet.
    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    /// bfd.LocalDiag.
    pub fn diag(&self) -> Diag {
        self.local_diag
    }

    /// Whether a Poll Sequence is running.
    pub fn polling(&self) -> bool {
        self.polling
    }

    /// The interval between periodic packets before jitter (§6.8.7): the
    /// larger of the Desired Min TX in use and the peer's Required Min RX.
    pub fn transmit_interval(&self) -> Duration {
        self.tx_in_use
            .max(Duration::from_micros(u64::from(self.remote_min_rx)))
    }

    /// The Detection Time (§6.8.4): the peer's Detect Mult times the larger
    /// of the Required Min RX in use and the peer's Desired Min TX.
    pub fn detection_time(&self) -> Duration {
        self.rx_in_use
            .max(Duration::from_micros(u64::from(self.remote_desired_min_tx)))
            * u32::from(self.remote_detect_mult)
    }

    /// The first actions: start transmitting (unless passive).
    pub fn start(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if self.may_transmit() {
            out.push(Action::Send(self.packet(false)));
            out.push(self.next_transmit());
        }
        out
    }

    /// Handles one input. Returns the actions, or why a packet was
    /// discarded (nothing changed then).
    pub fn handle(&mut self, input: Input) -> Result<Vec<Action>, Discard> {
        let mut out = Vec::new();
        let before = (self.state, self.may_transmit(), self.transmit_interval());
        match input {
            Input::Packet(p) => self.receive(p, &mut out)?,
            Input::TransmitTimer => {
                if self.may_transmit() {
                    out.push(Action::Send(self.packet(false)));
                    out.push(self.next_transmit());
                } else {
                    out.push(Action::CancelTransmitTimer);
                }
            }
            Input::DetectionTimer => {
                // §6.8.4: Init or Up → Down with diag 1; in any state the
                // remote discriminator is forgotten (§6.8.1).
                self.remote_discriminator = 0;
                if matches!(self.state, State::Init | State::Up) {
                    self.change(State::Down, Diag::DETECTION_TIME_EXPIRED, &mut out);
                }
            }
            Input::AdminDown => {
                if self.state != State::AdminDown {
                    out.push(Action::CancelDetectionTimer);
                    self.change(State::AdminDown, Diag::ADMIN_DOWN, &mut out);
                }
            }
            Input::AdminUp => {
                if self.state == State::AdminDown {
                    self.change(State::Down, Diag::NONE, &mut out);
                }
            }
            Input::SetTimers(timers) => self.set_timers(timers, &mut out),
        }
        // A new state, a new interval (a Final, the peer's new Required
        // Min RX) or a peer heard at last (Passive role, Required Min RX
        // no longer 0): rearm the transmit timer.
        let after = (self.state, self.may_transmit(), self.transmit_interval());
        if input != Input::TransmitTimer && after != before {
            out.push(self.next_transmit());
        }
        Ok(out)
    }

    /// RFC 5880 §6.8.6, the steps after the stateless checks.
    fn receive(&mut self, p: Packet, out: &mut Vec<Action>) -> Result<(), Discard> {
        if p.your_discriminator != 0 && p.your_discriminator != self.config.local_discriminator {
            return Err(Discard::WrongDiscriminator(p.your_discriminator));
        }
        if self.state == State::AdminDown {
            return Err(Discard::AdminDown);
        }
        self.remote_discriminator = p.my_discriminator;
        self.remote_state = p.state;
        self.remote_min_rx = p.required_min_rx;
        self.remote_desired_min_tx = p.desired_min_tx;
        self.remote_detect_mult = p.detect_mult;
        // §6.5: the F bit ends our Poll Sequence; the advertised timers
        // are now in use on both sides (§6.8.3).
        if p.final_ && self.polling {
            self.polling = false;
            self.tx_in_use = self.advertised_tx();
            self.rx_in_use = self.config.timers.required_min_rx;
        }
        match (self.state, p.state) {
            (State::Init | State::Up, State::AdminDown) => {
                self.change(State::Down, Diag::NEIGHBOR_SIGNALED_DOWN, out);
            }
            (State::Down, State::Down) => self.change(State::Init, self.local_diag, out),
            (State::Down, State::Init) => self.change(State::Up, self.local_diag, out),
            (State::Init, State::Init | State::Up) => self.change(State::Up, self.local_diag, out),
            (State::Up, State::Down) => self.change(State::Down, Diag::NEIGHBOR_SIGNALED_DOWN, out),
            _ => {}
        }
        if p.poll {
            // §6.8.7: answer a Poll with F at once, P clear.
            out.push(Action::Send(self.packet(true)));
        }
        // §6.8.4: every valid packet restarts the detection timer (in Down
        // it bounds how long the remote discriminator is kept, §6.8.1).
        out.push(Action::SetDetectionTimer(self.detection_time()));
        Ok(())
    }

    /// §6.8.3: a change of timers while Up starts a Poll Sequence. An
    /// increase of Desired Min TX and a decrease of Required Min RX wait
    /// for the F bit; the other directions apply at once.
    fn set_timers(&mut self, timers: Timers, out: &mut Vec<Action>) {
        if timers == self.config.timers {
            return;
        }
        self.config.timers = timers;
        if self.state == State::Up {
            self.tx_in_use = self.tx_in_use.min(self.advertised_tx());
            self.rx_in_use = self.rx_in_use.max(timers.required_min_rx);
            self.start_poll(out);
        } else {
            self.tx_in_use = self.advertised_tx();
            self.rx_in_use = timers.required_min_rx;
        }
    }

    fn start_poll(&mut self, out: &mut Vec<Action>) {
        self.polling = true;
        if self.may_transmit() {
            out.push(Action::Send(self.packet(false)));
            out.push(self.next_transmit());
        }
    }

    /// Enters `to` and tells the peer at once (the caller rearms the
    /// transmit timer).
    fn change(&mut self, to: State, diag: Diag, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        self.local_diag = diag;
        out.push(Action::StateChanged { from, to, diag });
        if to == State::Up {
            // Leaving the slow rate changes Desired Min TX: negotiate the
            // configured timers with a Poll Sequence (§6.8.3). A faster
            // rate applies at once (the peer's detection time follows the
            // Desired Min TX we advertise from now on); a slower one waits
            // for the F.
            self.polling = true;
            self.tx_in_use = self.tx_in_use.min(self.advertised_tx());
        } else {
            // Not Up: the slow rate at once, no Poll (§6.8.3).
            self.polling = false;
            self.tx_in_use = self.advertised_tx();
            self.rx_in_use = self.config.timers.required_min_rx;
        }
        if self.may_transmit() {
            out.push(Action::Send(self.packet(false)));
        }
    }

    /// The Desired Min TX to advertise: the configured one when Up, at
    /// least [`SLOW_TX`] otherwise (§6.8.3).
    fn advertised_tx(&self) -> Duration {
        if self.state == State::Up {
            self.config.timers.desired_min_tx
        } else {
            self.config.timers.desired_min_tx.max(SLOW_TX)
        }
    }

    /// §6.8.7: nothing while the peer asks for no packets (Required Min RX
    /// 0), nor, in the Passive role, before the peer is heard.
    fn may_transmit(&self) -> bool {
        self.remote_min_rx != 0 && !(self.config.passive && self.remote_discriminator == 0)
    }

    /// The next periodic transmission, jittered (§6.8.7): 75–100% of the
    /// interval, 75–90% when Detect Mult is 1.
    fn next_transmit(&mut self) -> Action {
        if !self.may_transmit() {
            return Action::CancelTransmitTimer;
        }
        let span = if self.config.timers.detect_mult == 1 {
            16
        } else {
            26
        };
        let percent = 75 + (self.jitter)() % span;
        Action::SetTransmitTimer(self.transmit_interval() * percent / 100)
    }

    fn packet(&mut self, final_: bool) -> Packet {
        Packet {
            diag: self.local_diag,
            state: self.state,
            // §6.8.7: never P and F together; the F answer goes out alone.
            poll: self.polling && !final_,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.config.timers.detect_mult,
            my_discriminator: self.config.local_discriminator,
            your_discriminator: self.remote_discriminator,
            desired_min_tx: micros(self.advertised_tx()),
            required_min_rx: micros(self.config.timers.required_min_rx),
            required_min_echo_rx: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn timers(tx_ms: u32, rx_ms: u32, mult: u8) -> Timers {
        Timers {
            desired_min_tx: tx_ms * MS,
            required_min_rx: rx_ms * MS,
            detect_mult: mult,
        }
    }

    /// A session whose jitter source always returns `r`.
    fn fsm_with(discr: u32, t: Timers, passive: bool, r: u32) -> Fsm {
        Fsm::new(
            Config {
                timers: t,
                local_discriminator: discr,
                passive,
            },
            Box::new(move || r),
        )
    }

    fn fsm(discr: u32) -> Fsm {
        fsm_with(discr, timers(100, 100, 3), false, 25)
    }

    fn sent(actions: &[Action]) -> Vec<Packet> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(p) => Some(*p),
                _ => None,
            })
            .collect()
    }

    fn last_sent(actions: &[Action]) -> Packet {
        *sent(actions).last().expect("a packet is sent")
    }

    fn changes(actions: &[Action]) -> Vec<(State, State)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::StateChanged { from, to, .. } => Some((*from, *to)),
                _ => None,
            })
            .collect()
    }

    fn deliver(to: &mut Fsm, p: Packet) -> Vec<Action> {
        to.handle(Input::Packet(p)).expect("accepted")
    }

    /// Runs the three-way handshake between `a` and `b` (a speaks first)
    /// and the Poll Sequences that follow; returns both once quiet.
    fn bring_up(a: &mut Fsm, b: &mut Fsm) {
        let mut to_b = sent(&a.start());
        let mut to_a = sent(&b.start());
        for _ in 0..10 {
            let mut next_b = Vec::new();
            for p in to_b.drain(..) {
                next_b.extend(sent(&deliver(b, p)));
            }
            let mut next_a = Vec::new();
            for p in to_a.drain(..) {
                next_a.extend(sent(&deliver(a, p)));
            }
            to_a = next_b;
            to_b = next_a;
            if to_a.is_empty() && to_b.is_empty() {
                break;
            }
        }
        // Periodic packets carry any P still pending.
        for _ in 0..3 {
            for p in sent(&a.handle(Input::TransmitTimer).unwrap()) {
                for q in sent(&deliver(b, p)) {
                    deliver(a, q);
                }
            }
            for p in sent(&b.handle(Input::TransmitTimer).unwrap()) {
                for q in sent(&deliver(a, p)) {
                    deliver(b, q);
                }
            }
        }
    }

    #[test]
    fn rfc_5880_6_8_1_a_new_session_is_down_and_sends_slowly_with_your_discriminator_0() {
        let mut a = fsm(1);
        let out = a.start();
        assert_eq!(a.state(), State::Down);
        let p = last_sent(&out);
        assert_eq!(p.state, State::Down);
        assert_eq!(p.your_discriminator, 0);
        assert_eq!(p.my_discriminator, 1);
        // §6.8.3: not Up, Desired Min TX at least 1 s.
        assert_eq!(p.desired_min_tx, 1_000_000);
        assert_eq!(p.required_min_rx, 100_000);
        assert_eq!(p.required_min_echo_rx, 0, "§6.8.9: no Echo");
        assert!(!p.demand && !p.poll && !p.final_);
        // Until the peer is heard, bfd.RemoteMinRxInterval is 1 µs: the
        // slow 1 s rate, jittered (r = 25 → 75 + 25 = 100%).
        assert!(out.contains(&Action::SetTransmitTimer(Duration::from_secs(1))));
    }

    #[test]
    fn rfc_5880_6_2_three_way_handshake_from_both_sides() {
        let mut a = fsm(1);
        let mut b = fsm(2);
        let pa = last_sent(&a.start());
        // b hears a's Down: Down → Init (§6.8.6), says so at once.
        let out = deliver(&mut b, pa);
        assert_eq!(changes(&out), vec![(State::Down, State::Init)]);
        let pb = last_sent(&out);
        assert_eq!((pb.state, pb.your_discriminator), (State::Init, 1));
        // a hears b's Init: Down → Up.
        let out = deliver(&mut a, pb);
        assert_eq!(changes(&out), vec![(State::Down, State::Up)]);
        let pa = last_sent(&out);
        assert_eq!((pa.state, pa.your_discriminator), (State::Up, 2));
        // b hears a's Up: Init → Up.
        let out = deliver(&mut b, pa);
        assert_eq!(changes(&out), vec![(State::Init, State::Up)]);
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));
    }

    #[test]
    fn rfc_5880_6_8_6_init_goes_up_on_init_too() {
        // Both start at once: each hears the other's Down → Init, then
        // each hears Init → Up.
        let mut a = fsm(1);
        let mut b = fsm(2);
        let pa = last_sent(&a.start());
        let pb = last_sent(&b.start());
        let ia = last_sent(&deliver(&mut a, pb));
        let ib = last_sent(&deliver(&mut b, pa));
        assert_eq!((ia.state, ib.state), (State::Init, State::Init));
        assert_eq!(
            changes(&deliver(&mut a, ib)),
            vec![(State::Init, State::Up)]
        );
        assert_eq!(
            changes(&deliver(&mut b, ia)),
            vec![(State::Init, State::Up)]
        );
    }

    #[test]
    fn rfc_5880_6_8_3_going_up_polls_for_the_fast_timers_which_apply_on_final() {
        let mut a = fsm(1);
        let mut b = fsm(2);
        let pa = last_sent(&a.start());
        let pb = last_sent(&deliver(&mut b, pa));
        let out = deliver(&mut a, pb);
        let up = last_sent(&out);
        // a is Up: its packet advertises 100 ms with P, and a sends at
        // that rate at once: b's detection time follows what a advertises
        // (a decrease needs no wait, §6.8.3).
        assert!(up.poll && !up.final_);
        assert_eq!(up.desired_min_tx, 100_000);
        assert!(a.polling());
        assert_eq!(a.transmit_interval(), 100 * MS);
        assert!(out.contains(&Action::SetTransmitTimer(100 * MS)));
        // b answers the P with F (and goes Up, polling itself).
        let out = deliver(&mut b, up);
        let answers = sent(&out);
        let fin = *answers.iter().find(|p| p.final_).expect("an F");
        assert!(!fin.poll, "§6.8.7: never P and F together");
        deliver(&mut a, fin);
        assert!(!a.polling());
        assert_eq!(a.transmit_interval(), 100 * MS);
    }

    #[test]
    fn rfc_5880_6_8_7_transmit_interval_is_the_larger_of_ours_and_the_peers_rx_with_jitter() {
        let mut a = fsm_with(1, timers(100, 100, 3), false, 0);
        let mut b = fsm_with(2, timers(300, 300, 3), false, 0);
        bring_up(&mut a, &mut b);
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));
        // a wants 100 ms, b can take no faster than 300 ms.
        assert_eq!(a.transmit_interval(), 300 * MS);
        assert_eq!(b.transmit_interval(), 300 * MS);
        // r = 0 → 75%.
        assert!(
            a.handle(Input::TransmitTimer)
                .unwrap()
                .contains(&Action::SetTransmitTimer(225 * MS))
        );
    }

    #[test]
    fn rfc_5880_6_8_7_jitter_is_75_to_100_percent_or_75_to_90_with_detect_mult_1() {
        for (mult, r, percent) in [
            (3, 25, 100),
            (3, 26, 75),
            (3, 10, 85),
            (1, 15, 90),
            (1, 16, 75),
        ] {
            let mut a = fsm_with(1, timers(1000, 1000, mult), false, r);
            let out = a.start();
            assert!(
                out.contains(&Action::SetTransmitTimer(10 * MS * percent)),
                "mult {mult} r {r}: {out:?}"
            );
        }
    }

    #[test]
    fn rfc_5880_6_8_4_detection_time_is_peer_mult_times_larger_of_our_rx_and_peer_tx() {
        let mut a = fsm_with(1, timers(100, 200, 3), false, 0);
        let mut b = fsm_with(2, timers(150, 100, 5), false, 0);
        bring_up(&mut a, &mut b);
        // a: b's mult 5 × max(a's RX 200, b's TX 150).
        assert_eq!(a.detection_time(), 1000 * MS);
        // b: a's mult 3 × max(b's RX 100, a's TX 100).
        assert_eq!(b.detection_time(), 300 * MS);
    }

    #[test]
    fn rfc_5880_6_8_4_detection_timeout_takes_up_down_with_diag_1() {
        let mut a = fsm(1);
        let mut b = fsm(2);
        bring_up(&mut a, &mut b);
        let out = a.handle(Input::DetectionTimer).unwrap();
        assert_eq!(changes(&out), vec![(State::Up, State::Down)]);
        assert_eq!(a.diag(), Diag::DETECTION_TIME_EXPIRED);
        let p = last_sent(&out);
        assert_eq!(
            (p.state, p.diag, p.your_discriminator),
            (State::Down, Diag::DETECTION_TIME_EXPIRED, 0)
        );
        assert_eq!(p.desired_min_tx, 1_000_000, "back to the slow rate");
        // b hears Down while Up: Down with diag 3.
        let out = deliver(&mut b, p);
        assert_eq!(changes(&out), vec![(State::Up, State::Down)]);
        assert_eq!(b.diag(), Diag::NEIGHBOR_SIGNALED_DOWN);
    }

    #[test]
    fn rfc_5880_6_8_4_detection_timeout_in_init_goes_down_and_in_down_only_forgets_the_peer() {
        let mut a = fsm(1);
        let mut b = fsm(2);
        let pb = last_sent(&b.start());
        deliver(&mut a, pb);
        assert_eq!(a.state(), State::Init);
        let out = a.handle(Input::DetectionTimer).unwrap();
        assert_eq!(changes(&out), vec![(State::Init, State::Down)]);
        let out = a.handle(Input::DetectionTimer).unwrap();
        assert!(changes(&out).is_empty());
        let out = a.handle(Input::TransmitTimer).unwrap();
        assert_eq!(last_sent(&out).your_discriminator, 0);
    }

    #[test]
    fn rfc_5880_6_8_6_every_valid_packet_restarts_the_detection_timer() {
        let mut a = fsm(1);
        let mut b = fsm(2);
        bring_up(&mut a, &mut b);
        let p = last_sent(&b.handle(Input::TransmitTimer).unwrap());
        assert!(deliver(&mut a, p).contains(&Action::SetDetectionTimer(300 * MS)));
    }

    #[test]
    fn rfc_5880_6_8_6_wrong_your_discriminator_is_discarded() {
        let mut a = fsm(1);
        let mut b = fsm(2);
        bring_up(&mut a, &mut b);
        let mut p = last_sent(&b.handle(Input::TransmitTimer).unwrap());
        p.your_discriminator = 99;
        assert_eq!(
            a.handle(Input::Packet(p)),
            Err(Discard::WrongDiscriminator(99))
        );
        assert_eq!(a.state(), State::Up);
    }

    #[test]
    fn rfc_5880_6_8_16_admin_down_is_signalled_and_the_peer_goes_down_with_diag_3() {
        let mut a = fsm(1);
        let mut b = fsm(2);
        bring_up(&mut a, &mut b);
        let out = a.handle(Input::AdminDown).unwrap();
        assert!(out.contains(&Action::CancelDetectionTimer));
        assert_eq!(changes(&out), vec![(State::Up, State::AdminDown)]);
        let p = last_sent(&out);
        assert_eq!((p.state, p.diag), (State::AdminDown, Diag::ADMIN_DOWN));
        let out = deliver(&mut b, p);
        assert_eq!(changes(&out), vec![(State::Up, State::Down)]);
        assert_eq!(b.diag(), Diag::NEIGHBOR_SIGNALED_DOWN);
        // §6.8.6: packets reaching an AdminDown session are discarded.
        let q = last_sent(&b.handle(Input::TransmitTimer).unwrap());
        assert_eq!(a.handle(Input::Packet(q)), Err(Discard::AdminDown));
        // AdminUp: back to Down with no diagnostic, then up again.
        let out = a.handle(Input::AdminUp).unwrap();
        assert_eq!(changes(&out), vec![(State::AdminDown, State::Down)]);
        assert_eq!(a.diag(), Diag::NONE);
        bring_up(&mut a, &mut b);
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));
    }

    #[test]
    fn rfc_5880_6_8_6_admin_down_heard_in_down_changes_nothing() {
        let mut a = fsm(1);
        let mut b = fsm(2);
        b.handle(Input::AdminDown).unwrap();
        let p = last_sent(&b.handle(Input::TransmitTimer).unwrap());
        assert!(changes(&deliver(&mut a, p)).is_empty());
        assert_eq!(a.state(), State::Down);
    }

    #[test]
    fn rfc_5880_6_5_lowering_our_timers_while_up_polls_and_applies_on_final() {
        let mut a = fsm_with(1, timers(300, 300, 3), false, 25);
        let mut b = fsm_with(2, timers(50, 50, 3), false, 25);
        bring_up(&mut a, &mut b);
        assert_eq!(a.transmit_interval(), 300 * MS);
        assert_eq!(b.detection_time(), 900 * MS);
        let out = a.handle(Input::SetTimers(timers(100, 100, 3))).unwrap();
        let p = last_sent(&out);
        assert!(p.poll);
        assert_eq!((p.desired_min_tx, p.required_min_rx), (100_000, 100_000));
        // A lower TX applies at once; a lower RX waits for the F (§6.8.3).
        assert_eq!(a.transmit_interval(), 100 * MS);
        assert_eq!(a.detection_time(), 900 * MS);
        // Periodic packets keep the P until the F.
        assert!(last_sent(&a.handle(Input::TransmitTimer).unwrap()).poll);
        let out = deliver(&mut b, p);
        assert!(changes(&out).is_empty(), "no flap");
        let fin = last_sent(&out);
        assert!(fin.final_);
        // b now detects with a's new TX: 3 × max(50, 100).
        assert_eq!(b.detection_time(), 300 * MS);
        deliver(&mut a, fin);
        assert!(!a.polling());
        assert_eq!(a.detection_time(), 300 * MS);
        assert!(!last_sent(&a.handle(Input::TransmitTimer).unwrap()).poll);
    }

    #[test]
    fn rfc_5880_6_5_raising_our_timers_while_up_keeps_the_old_tx_until_final() {
        let mut a = fsm_with(1, timers(100, 100, 3), false, 25);
        let mut b = fsm_with(2, timers(50, 50, 3), false, 25);
        bring_up(&mut a, &mut b);
        let out = a.handle(Input::SetTimers(timers(500, 500, 3))).unwrap();
        let p = last_sent(&out);
        assert!(p.poll);
        // A higher TX waits for the F; a higher RX applies at once.
        assert_eq!(a.transmit_interval(), 100 * MS);
        assert_eq!(a.detection_time(), 1500 * MS);
        let fin = last_sent(&deliver(&mut b, p));
        // The F brings the slower rate; the transmit timer is rearmed.
        assert!(deliver(&mut a, fin).contains(&Action::SetTransmitTimer(500 * MS)));
        assert_eq!(a.transmit_interval(), 500 * MS);
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));
    }

    #[test]
    fn rfc_5880_6_5_the_peer_polling_us_gets_a_final_and_its_new_timers_are_used() {
        let mut a = fsm_with(1, timers(100, 100, 3), false, 25);
        let mut b = fsm_with(2, timers(100, 100, 3), false, 25);
        bring_up(&mut a, &mut b);
        let p = last_sent(&b.handle(Input::SetTimers(timers(400, 400, 4))).unwrap());
        let out = deliver(&mut a, p);
        let fin = last_sent(&out);
        assert!(fin.final_ && !fin.poll);
        assert_eq!(fin.your_discriminator, 2);
        // a sends no faster than b now takes, and detects with b's values.
        assert_eq!(a.transmit_interval(), 400 * MS);
        assert_eq!(a.detection_time(), 1600 * MS);
        assert!(changes(&out).is_empty());
    }

    #[test]
    fn rfc_5880_6_8_3_timer_changes_while_not_up_apply_at_once_without_poll() {
        let mut a = fsm(1);
        let out = a.handle(Input::SetTimers(timers(50, 2000, 3))).unwrap();
        assert!(sent(&out).is_empty());
        assert!(!a.polling());
        let p = last_sent(&a.handle(Input::TransmitTimer).unwrap());
        assert_eq!(
            (p.desired_min_tx, p.required_min_rx),
            (1_000_000, 2_000_000)
        );
    }

    #[test]
    fn rfc_5880_6_8_7_a_peer_requiring_rx_0_gets_no_periodic_packets() {
        let mut a = fsm(1);
        let mut b = fsm(2);
        let mut p = last_sent(&b.start());
        p.required_min_rx = 0;
        let out = deliver(&mut a, p);
        assert!(out.contains(&Action::CancelTransmitTimer));
        assert_eq!(
            a.handle(Input::TransmitTimer).unwrap(),
            vec![Action::CancelTransmitTimer]
        );
    }

    #[test]
    fn rfc_5880_6_1_a_passive_session_waits_for_the_peer() {
        let mut a = fsm_with(1, timers(100, 100, 3), true, 25);
        assert!(a.start().is_empty());
        assert_eq!(
            a.handle(Input::TransmitTimer).unwrap(),
            vec![Action::CancelTransmitTimer]
        );
        let mut b = fsm(2);
        let out = deliver(&mut a, last_sent(&b.start()));
        assert_eq!(last_sent(&out).state, State::Init);
        assert!(out.iter().any(|x| matches!(x, Action::SetTransmitTimer(_))));
    }
}
