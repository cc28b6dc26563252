//! The CPUs this process may run on, pinning a thread to one, and the CPU
//! a TCP connection's packets arrive on (`SO_INCOMING_CPU`: on loopback,
//! the client's own CPU). Only this process's own threads and sockets are
//! asked: never another process's state.

use std::os::fd::RawFd;

/// The CPUs this process may run on.
#[cfg(target_os = "linux")]
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the zeroed set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

#[cfg(not(target_os = "linux"))]
pub fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

/// Pins the calling thread to `cpu` (a failure leaves it unpinned).
#[cfg(target_os = "linux")]
pub fn pin_current_thread(cpu: usize) {
    // SAFETY: sched_setaffinity reads the set we own; 0 is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            tracing::debug!(cpu, "could not pin a protocol thread");
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn pin_current_thread(_cpu: usize) {}

/// The CPU that last received packets for TCP socket `fd`, if the system
/// tells (none before the first packet, none off Linux).
#[cfg(target_os = "linux")]
pub fn incoming_cpu(fd: RawFd) -> Option<usize> {
    let mut cpu: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cpu`.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_INCOMING_CPU,
            (&mut cpu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (result == 0 && cpu >= 0).then_some(cpu as usize)
}

#[cfg(not(target_os = "linux"))]
pub fn incoming_cpu(_fd: RawFd) -> Option<usize> {
    None
}
