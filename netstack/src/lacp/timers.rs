//! The 802.1AX timer values (clause 6.4.4) and the transmit rate limit.

use smoltcp::time::Duration;

/// Between PDUs when the partner asked for the short timeout.
pub const FAST_PERIODIC_TIME: Duration = Duration::from_secs(1);
/// Between PDUs when the partner asked for the long timeout.
pub const SLOW_PERIODIC_TIME: Duration = Duration::from_secs(30);
/// Partner information expires after this without a PDU (fast rate: 3 × 1 s).
pub const SHORT_TIMEOUT_TIME: Duration = Duration::from_secs(3);
/// Partner information expires after this without a PDU (slow rate: 3 × 30 s).
pub const LONG_TIMEOUT_TIME: Duration = Duration::from_secs(90);
/// A port out of sync this long is reported as churned.
pub const CHURN_DETECTION_TIME: Duration = Duration::from_secs(60);
/// How long a port waits in WAITING so that ports brought up together join
/// the aggregator together.
pub const AGGREGATE_WAIT_TIME: Duration = Duration::from_secs(2);
/// At most this many LACPDUs per [`FAST_PERIODIC_TIME`] on one port.
pub const MAX_TX_PER_PERIOD: usize = 3;
