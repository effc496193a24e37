//! The receiver thread: until the crypto path exists, it counts VPN-bound
//! frames per connection and releases them.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{KernelStats, XskSocket, XskStats};

/// How long `poll(2)` waits, hence how late the thread notices `stop`.
const POLL_TIMEOUT_MS: libc::c_int = 100;
/// Descriptors taken per `recv` call.
const BATCH: usize = 64;
/// Batches per socket per wake-up, so one busy queue cannot starve the others.
const BATCHES_PER_WAKE: usize = 16;
/// How often the kernel's per-socket counters are copied into the stats.
const KERNEL_STATS_EVERY: Duration = Duration::from_secs(1);

/// Starts a thread that polls `sockets`, counts each frame in `stats` under
/// its connection and releases it, until `stop` is set (noticed within about
/// 100 ms). The sockets are closed when the thread ends.
///
/// The crypto path does not exist yet: VPN-bound frames are counted, then
/// dropped; the thread says so once, at info level, when the first arrives.
pub fn spawn_receiver(
    sockets: Vec<XskSocket>,
    stats: Arc<XskStats>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("vpcgw-xsk-rx".into())
        .spawn(move || run(sockets, &stats, &stop))
}

fn run(mut sockets: Vec<XskSocket>, stats: &XskStats, stop: &AtomicBool) {
    tracing::debug!(sockets = sockets.len(), "AF_XDP receiver started");
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|s| libc::pollfd {
            fd: s.fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let Ok(nfds) = libc::nfds_t::try_from(fds.len()) else {
        tracing::error!(sockets = fds.len(), "too many AF_XDP sockets to poll");
        return;
    };
    let mut bad_seen: Vec<u64> = sockets.iter().map(XskSocket::bad_descriptors).collect();
    let mut announced = false;
    let mut kernel_at = Instant::now();

    while !stop.load(Ordering::Acquire) {
        // SAFETY: `fds` holds `nfds` initialised pollfds and outlives the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), nfds, POLL_TIMEOUT_MS) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::warn!(error = %e, "poll on AF_XDP sockets failed");
                std::thread::sleep(Duration::from_millis(POLL_TIMEOUT_MS as u64));
            }
            continue;
        }
        for ((pfd, sock), seen) in fds
            .iter_mut()
            .zip(sockets.iter_mut())
            .zip(bad_seen.iter_mut())
        {
            if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                // Not expected from an AF_XDP socket; stop polling it rather
                // than spin on an error that poll keeps reporting.
                tracing::warn!(
                    ifindex = sock.ifindex(),
                    queue = sock.queue(),
                    revents = pfd.revents,
                    "AF_XDP socket reports an error; no longer polled"
                );
                pfd.fd = -1;
                continue;
            }
            if pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            let (ifindex, queue) = (sock.ifindex(), sock.queue());
            for _ in 0..BATCHES_PER_WAKE {
                let taken = sock.recv(BATCH, |frame| {
                    if !announced {
                        announced = true;
                        tracing::info!(
                            ifindex,
                            queue,
                            "VPN-bound traffic reaches the AF_XDP sockets, but the crypto (ESP) \
                             path is not present yet: frames are counted per connection and released"
                        );
                    }
                    stats.record(frame.meta.as_ref(), frame.data.len() as u64);
                });
                if taken < BATCH {
                    break;
                }
            }
            let bad = sock.bad_descriptors();
            stats.add_bad_descriptors(bad.wrapping_sub(*seen));
            *seen = bad;
        }
        if kernel_at.elapsed() >= KERNEL_STATS_EVERY {
            kernel_at = Instant::now();
            refresh_kernel_stats(&sockets, stats);
        }
    }
    refresh_kernel_stats(&sockets, stats);
    tracing::debug!("AF_XDP receiver stopped");
}

fn refresh_kernel_stats(sockets: &[XskSocket], stats: &XskStats) {
    let all = sockets.iter().filter_map(|s| s.kernel_stats().ok());
    stats.set_kernel(KernelStats::sum(all));
}
