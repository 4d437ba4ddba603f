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

/// Raises this process's soft open-file limit to its hard limit and returns both.
pub fn raise() -> std::io::Result<FdLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
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
    }
}
