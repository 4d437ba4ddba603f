//! What a mirror is pointed at and how it paces itself.

use std::time::Duration;

use exosphere_ddp::client::ClientConfig;
use exosphere_sync_client::PassOptions;

/// How a mirror runs. Every field has a flag on `exosphere serve` (`--upstream-*`).
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorConfig {
    /// The upstream package server's URL, as the `meteor` tool takes it
    /// (`https://packages.meteor.com`).
    pub upstream: String,
    /// The base URL Exosphere's clients reach it at: mirrored file URLs are rewritten to
    /// start with it, so downloads come through Exosphere.
    pub public_url: String,
    /// The DDP client's limits towards the upstream.
    pub client: ClientConfig,
    /// How pages are asked for and how much a page may be.
    pub pass: PassOptions,
    /// How often the upstream is synced even when its `changes` publication says nothing
    /// (an upstream without it is only polled).
    pub poll_interval: Duration,
    /// The first pause after a failure; it doubles up to `max_backoff`.
    pub first_backoff: Duration,
    /// The longest pause between attempts while the upstream fails.
    pub max_backoff: Duration,
    /// The share of the served catalog a resync may lose before it is held for an operator
    /// instead of applied (0.1: a new upstream catalog with more than 10% fewer records).
    pub max_shrink: f64,
}
