//! Open-file limits: every DDP session is a socket, so a server (or a load generator) with
//! thousands of clients needs more descriptors than the usual soft limit of 1024.

/// The soft and hard `RLIMIT_NOFILE` after raising the soft limit to the hard one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// Descriptors this process may open now.
    pub soft: u64,
    /// The ceiling only an administrator can raise (`ulimit -Hn`, `LimitNOFILE=`).
    pub hard: u64,
}

/// Descriptors kept out of [`connection_cap`]: the catalog's read connections (opened on
/// tokio's blocking pool, at most its 512 threads, each with the database, its WAL and its
/// shared-memory file), the rendered `/stats/v1` days kept (at most 64) and rendering,
/// files being uploaded or downloaded, the mirror's connections, logs.
pub const RESERVED: u64 = 2048;

/// The most TCP connections a server can keep open under an open-file limit of `soft`:
/// the limit less [`RESERVED`] (or less half, if that is smaller: an idle server already
/// holds about twenty), so that the server refuses connections before it runs out of
/// descriptors.
pub fn connection_cap(soft: u64) -> usize {
    let cap = soft.saturating_sub(RESERVED.min(soft / 2));
    usize::try_from(cap).unwrap_or(usize::MAX).max(1)
}

/// This process's open-file limits as they are.
pub fn current() -> std::io::Result<FdLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(FdLimit {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

/// Raises this process's soft open-file limit to its hard limit and returns both.
pub fn raise() -> std::io::Result<FdLimit> {
    let current = current()?;
    let mut limit = libc::rlimit {
        rlim_cur: current.soft,
        rlim_max: current.hard,
    };
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; the kernel only reads it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(FdLimit {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = super::raise().expect("getrlimit works");
        assert_eq!(limit.soft, limit.hard);
        assert_eq!(super::raise().expect("idempotent"), limit);
        assert_eq!(super::current().expect("getrlimit works"), limit);
    }

    #[test]
    fn the_connection_cap_leaves_descriptors_for_files() {
        assert_eq!(super::connection_cap(1024), 512);
        assert_eq!(super::connection_cap(8192), 8192 - 2048);
        assert_eq!(super::connection_cap(100), 50);
        assert_eq!(super::connection_cap(0), 1);
        assert_eq!(super::connection_cap(1 << 20), (1 << 20) - 2048);
    }
}
