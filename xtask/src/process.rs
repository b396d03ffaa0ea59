//! Long-running children (the host, a reference server, the load generator) and signals.
//!
//! Children stay in xtask's process group, so a Ctrl-C at the terminal reaches them directly.
//! xtask must outlive them to report their exit status and stop the rest, so while a
//! `Supervised` child exists xtask catches SIGINT, SIGTERM and SIGHUP instead of dying:
//! - a signal the kernel sent (a terminal's Ctrl-C or hang-up) already reached the whole group,
//!   so it is only noted;
//! - a signal some process sent to xtask alone (`kill <pid>`) is forwarded to every live child.
//!
//! Every child is stopped by its own pid (SIGTERM, then SIGKILL after a grace period), also on
//! early return through `Drop`; nothing is ever killed by name.

use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Pids of live supervised children, read by the signal handler; 0 marks a free slot.
/// A fixed array because a signal handler may not allocate or lock.
static CHILD_PIDS: [AtomicI32; 8] = [const { AtomicI32::new(0) }; 8];
/// Set once any of the caught signals arrived; long tasks check it between steps.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static INSTALL_HANDLERS: Once = Once::new();

/// A child process that is stopped by pid when dropped.
pub struct Supervised {
    name: String,
    child: Child,
    slot: Option<usize>,
    status: Option<ExitStatus>,
}

impl Supervised {
    pub fn spawn(name: &str, command: &mut Command) -> anyhow::Result<Supervised> {
        INSTALL_HANDLERS.call_once(install_handlers);
        let child = command.spawn().with_context(|| {
            format!(
                "could not start {name}: `{}`",
                crate::project::show(command)
            )
        })?;
        let pid = child.id() as i32;
        let slot = CHILD_PIDS.iter().position(|slot| {
            slot.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
        Ok(Supervised {
            name: name.to_string(),
            child,
            slot,
            status: None,
        })
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Waits for the child to exit on its own (or through a forwarded signal).
    pub fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        let status = self
            .child
            .wait()
            .with_context(|| format!("waiting for {}", self.name))?;
        self.exited(status);
        Ok(status)
    }

    /// `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let status = self
            .child
            .try_wait()
            .with_context(|| format!("polling {}", self.name))?;
        if let Some(status) = status {
            self.exited(status);
        }
        Ok(status)
    }

    /// Waits up to `timeout` for the child to exit on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL if the child is still running after `grace`.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        // SAFETY: kill(2) on the pid of our own child that has not been reaped yet (try_wait
        // above saw it running), so the pid cannot have been reused.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        if let Some(status) = self.wait_timeout(grace)? {
            return Ok(status);
        }
        eprintln!(
            "xtask: {} ignored SIGTERM for {grace:?}; killing it",
            self.name
        );
        self.child
            .kill()
            .with_context(|| format!("killing {}", self.name))?;
        self.wait()
    }

    fn exited(&mut self, status: ExitStatus) {
        self.status = Some(status);
        if let Some(slot) = self.slot.take() {
            CHILD_PIDS[slot].store(0, Ordering::SeqCst);
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Err(err) = self.stop(Duration::from_secs(5)) {
            eprintln!("xtask: could not stop {}: {err:#}", self.name);
        }
    }
}

/// True once SIGINT, SIGTERM or SIGHUP reached xtask while it supervised a child.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The exit code a shell would report for `status` (128 + signal for a killed child).
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(signal)) => (128 + signal).clamp(0, 255) as u8,
        (None, None) => 1,
    }
}

fn install_handlers() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: sigaction with a zeroed, then filled, struct; the handler only does
        // async-signal-safe work (atomics and kill(2)). A handler rather than SIG_IGN, because
        // exec resets handlers to the default but keeps SIG_IGN: children must stay killable.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                on_signal;
            action.sa_sigaction = handler as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

extern "C" fn on_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    // SAFETY: the kernel passes a valid siginfo_t because the handler is installed with
    // SA_SIGINFO.
    let sent_by_kernel = unsafe { (*info).si_code } == libc::SI_KERNEL;
    if sent_by_kernel {
        return;
    }
    for slot in &CHILD_PIDS {
        let pid = slot.load(Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill(2) is async-signal-safe. Slots are cleared right after the child is
            // reaped, so at worst a signal in that instant hits a pid the kernel has not reused
            // yet (pids are handed out sequentially).
            unsafe { libc::kill(pid, signal) };
        }
    }
}
