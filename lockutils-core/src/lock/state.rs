//! What the lock layer keeps per name beside the name's lock in the registries.

use crate::backend::ExternalCache;
use crate::queue::RawSemaphore;

/// What the lock layer keeps for each name of the fair registry: the external-lock state,
/// and the gate through which the name's shared holders take (or join) the shared external
/// lock one at a time. Exclusive holders need no gate: the in-process lock already admits
/// one at a time.
pub struct FairState {
    /// The external lock's state (see [`ExternalCache`]).
    pub(crate) cache: parking_lot::Mutex<ExternalCache>,
    /// One permit: held by the shared holder taking or joining the external lock. Waited
    /// for within the acquire's timeout, by a thread or a task; never held across a hold.
    pub(crate) stage: RawSemaphore,
}

impl crate::backend::HasExternalCache for FairState {
    fn external_cache(&self) -> &parking_lot::Mutex<ExternalCache> {
        &self.cache
    }
}

impl Default for FairState {
    fn default() -> Self {
        FairState {
            cache: parking_lot::Mutex::default(),
            stage: RawSemaphore::new(1),
        }
    }
}
