//! Subcommands.

pub mod codec;
pub mod consume;
pub mod consumers;
pub mod knobs;
pub mod produce;
pub mod produce_error;
pub mod report;
pub mod sample;
pub mod security;
pub mod settings;
pub mod sink;
pub mod sweep;
pub mod tune;
pub mod verify;
pub mod workload;

/// Sets `flag` on SIGINT/SIGTERM; a second signal exits at once.
pub fn stop_on_signals() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // The conditional shutdown is registered first, so it sees the flag
        // as it was before this signal: only a second signal exits.
        let _ = flag::register_conditional_shutdown(sig, 130, stop.clone());
        let _ = flag::register(sig, stop.clone());
    }
    stop
}
