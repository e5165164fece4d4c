//! Turning a panic inside a stage into an error that names the stage, instead of a crashed
//! worker that never releases its slot (which used to hang the scheduler).
use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

/// How many stage executions are running under `catch`: while any is, the panic hook records
/// the panic instead of printing it (the error that reaches the user carries it).
static CATCHING: AtomicUsize = AtomicUsize::new(0);
/// Message and location of the most recent panic seen by the hook.
static LAST: Mutex<Option<(String, String)>> = Mutex::new(None);
static INSTALL: Once = Once::new();

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

/// Install (once) a panic hook that records the message and location of panics. Outside a
/// stage it prints as the default hook does.
pub fn install_panic_hook() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_default();
            *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some((payload_text(info.payload()), location));
            if CATCHING.load(Ordering::SeqCst) == 0 {
                previous(info);
            }
        }));
    });
}

/// Run `f`; a panic becomes `Err("message at file:line:col")`.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_panic_hook();
    CATCHING.fetch_add(1, Ordering::SeqCst);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.fetch_sub(1, Ordering::SeqCst);
    result.map_err(|payload| {
        let message = payload_text(payload.as_ref());
        match LAST.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some((m, location)) if m == message && !location.is_empty() => format!("{message} (at {location})"),
            _ => message,
        }
    })
}
