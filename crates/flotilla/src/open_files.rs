//! The process's open-file limit, and how it is shared out among client connections so that
//! neither the REST API's clients nor devices can take the descriptors the other needs.

/// Descriptors kept for everything but client connections: the database's connections and
/// files, the data dir's files, the listeners, the runtimes' own (epoll, eventfd, signals), and
/// one for accepting a connection only to close it.
const RESERVED: u64 = 128;

/// Beyond this, open files are not the scarce resource (memory is).
const PLENTY: u64 = 1 << 20;

/// Connections per client address at most, by default, however many the process may open.
const DEFAULT_PER_ADDRESS_CEILING: usize = 256;

/// The REST API's connections at most, by default, however many the process may open: a
/// server's files are for its devices (a process at 20,000 open files holds 18,848 devices),
/// and a few hundred HTTP clients are many.
const DEFAULT_WEB_CEILING: usize = 1024;

/// Raises the soft limit on open files to the hard one (a server holds a socket per client and
/// per device; the common soft limit of 1,024 is far below what the hard limit allows).
pub fn raise_to_hard_limit() {
    #[cfg(unix)]
    if let Some(mut limit) = current() {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads one rlimit struct we own; a refusal changes nothing.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not raise the open-file limit");
        }
    }
}

/// The soft limit on open files now in force.
fn limit() -> u64 {
    #[cfg(unix)]
    if let Some(limit) = current() {
        // `rlim_t` is u64 on Linux but not everywhere.
        #[allow(clippy::unnecessary_cast)]
        return (limit.rlim_cur as u64).min(PLENTY);
    }
    PLENTY
}

#[cfg(unix)]
fn current() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// How many client connections each side may hold at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// The REST API's listeners (HTTP and HTTPS, MQTT over WebSockets included) together.
    pub web: usize,
    /// Of those, from one client address.
    pub web_per_address: usize,
    /// The MQTT-over-TLS device endpoint.
    pub devices: usize,
}

impl ConnectionBudget {
    /// [`ConnectionBudget::new`] for this process's open-file limit, logged.
    pub fn of_this_process(
        web: Option<usize>,
        web_per_address: Option<usize>,
    ) -> anyhow::Result<ConnectionBudget> {
        let open_files = limit();
        let budget = ConnectionBudget::new(open_files, web, web_per_address)?;
        tracing::info!(
            open_files,
            api = budget.web,
            api_per_address = budget.web_per_address,
            devices = budget.devices,
            "connections at most"
        );
        Ok(budget)
    }

    /// Shares what `open_files` leaves after the reserve: by default a half to the REST API, at
    /// most 1,024 (a quarter of that, at most 256, per client address), and the rest to devices.
    pub fn new(
        open_files: u64,
        web: Option<usize>,
        web_per_address: Option<usize>,
    ) -> anyhow::Result<ConnectionBudget> {
        let available = open_files.saturating_sub(RESERVED) as usize;
        let web = web
            .unwrap_or((available / 2).min(DEFAULT_WEB_CEILING))
            .max(1);
        if web >= available {
            anyhow::bail!(
                "--max-connections {web} leaves no open files for devices: this process may open \
                 {open_files} files, {RESERVED} of them kept for the server itself; raise the \
                 limit (ulimit -n) or lower --max-connections"
            );
        }
        let web_per_address = web_per_address
            .unwrap_or((web / 4).min(DEFAULT_PER_ADDRESS_CEILING))
            .clamp(1, web);
        Ok(ConnectionBudget {
            web,
            web_per_address,
            devices: available - web,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_share_what_the_reserve_leaves() {
        assert_eq!(
            ConnectionBudget::new(1024, None, None).unwrap(),
            ConnectionBudget {
                web: 448,
                web_per_address: 112,
                devices: 448
            }
        );
        let large = ConnectionBudget::new(1 << 20, None, None).unwrap();
        assert_eq!(large.web, 1024);
        assert_eq!(large.web_per_address, 256);
        assert_eq!(large.web + large.devices, (1 << 20) - 128);
        // The benchmarks' limit: the devices keep the bulk of it.
        assert_eq!(
            ConnectionBudget::new(20_000, None, None).unwrap().devices,
            18_848
        );
    }

    #[test]
    fn flags_are_taken_as_given_while_devices_keep_some() {
        let budget = ConnectionBudget::new(1024, Some(100), Some(500)).unwrap();
        assert_eq!(budget.web, 100);
        assert_eq!(budget.web_per_address, 100);
        assert_eq!(budget.devices, 796);
        assert!(ConnectionBudget::new(1024, Some(896), None).is_err());
    }
}
