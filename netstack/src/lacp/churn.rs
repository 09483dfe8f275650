//! The churn detection machines (802.1AX 6.4.17): a port that does not reach
//! synchronization within [`CHURN_DETECTION_TIME`] is flagged, so an operator
//! can tell a misconfigured partner from a slow one.

use smoltcp::time::Instant;

use super::CHURN_DETECTION_TIME;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChurnState {
    /// Watching: churn is declared at the deadline unless sync comes first.
    Monitor {
        deadline: Option<Instant>,
    },
    NoChurn,
    Churn,
}

/// One churn machine (the port has one for the actor, one for the partner).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChurnMachine {
    state: ChurnState,
}

impl ChurnMachine {
    pub(crate) fn new() -> Self {
        ChurnMachine {
            state: ChurnState::Monitor { deadline: None },
        }
    }

    pub(crate) fn state(&self) -> ChurnState {
        self.state
    }

    /// Advances the machine; true when it has just entered churn. Only an
    /// enabled port is watched: an unplugged one is no news.
    pub(crate) fn update(&mut self, now: Instant, enabled: bool, in_sync: bool) -> bool {
        if !enabled {
            self.state = ChurnState::Monitor { deadline: None };
            return false;
        }
        match self.state {
            ChurnState::Monitor { .. } | ChurnState::Churn if in_sync => {
                self.state = ChurnState::NoChurn;
            }
            ChurnState::Monitor { deadline } => {
                let deadline = deadline.unwrap_or(now + CHURN_DETECTION_TIME);
                if now >= deadline {
                    self.state = ChurnState::Churn;
                    return true;
                }
                self.state = ChurnState::Monitor {
                    deadline: Some(deadline),
                };
            }
            ChurnState::NoChurn if !in_sync => {
                self.state = ChurnState::Monitor {
                    deadline: Some(now + CHURN_DETECTION_TIME),
                };
            }
            ChurnState::NoChurn | ChurnState::Churn => {}
        }
        false
    }

    /// When the machine next needs a look.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            ChurnState::Monitor { deadline } => deadline,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::time::Duration;

    #[test]
    fn churn_is_declared_after_sixty_seconds_out_of_sync() {
        let mut m = ChurnMachine::new();
        let t0 = Instant::from_secs(10);
        assert!(!m.update(t0, true, false));
        assert_eq!(m.deadline(), Some(t0 + CHURN_DETECTION_TIME));
        assert!(!m.update(t0 + Duration::from_secs(59), true, false));
        assert!(m.update(t0 + CHURN_DETECTION_TIME, true, false));
        assert_eq!(m.state(), ChurnState::Churn);
        assert!(!m.update(t0 + Duration::from_secs(61), true, true));
        assert_eq!(m.state(), ChurnState::NoChurn);
        assert!(!m.update(t0 + Duration::from_secs(62), true, false));
        assert!(matches!(m.state(), ChurnState::Monitor { .. }));
        assert!(!m.update(t0 + Duration::from_secs(63), false, false));
        assert_eq!(m.deadline(), None);
    }
}
