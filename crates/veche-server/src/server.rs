//! Start-up and shutdown of `veche serve`: bind the HTTP listener, start the SFU, serve until
//! SIGINT/SIGTERM, then stop in order.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use axum::http::HeaderValue;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::RustlsConfig;
use tokio::sync::watch;
use tracing::{info, warn};
use veche_sfu::{ResumeKey, SfuConfig, SfuHandle};

use crate::api::{ApiState, Clock, SystemClock};
use crate::auth::Hasher;
use crate::config::{Config, Tls, discover_public_ips};
use crate::dashboard::Dashboard;
use crate::gate::{JoinGate, live_meetings_to_restore, store_events};
use crate::http::router_with_api;
use crate::sockets::LiveSockets;
use crate::state::{AppState, HttpPolicy, WsStats};
use crate::store::{LockoutPolicy, Store};
use crate::tls;
use crate::turn::TurnRest;
use crate::turn_server::{self, RunningTurn};
use crate::webhooks;

/// How long in-flight HTTP requests and WebSocket goodbyes get once shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);
/// The shortest wait before a failed write of meeting snapshots is tried again.
const MIN_SAVE_RETRY: Duration = Duration::from_millis(100);

pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let public_ips = if config.public_ips.is_empty() {
        discover_public_ips(config.media_bind.ip())?
    } else {
        config.public_ips.clone()
    };
    // Migrations run before anything listens, so a bad database URL fails fast.
    let store = Store::open(&config.database)
        .await
        .with_context(|| format!("opening the database {}", redact(&config.database)))?
        .with_hasher(
            Hasher::new(config.hash_concurrency, config.hash_wait)
                .context("preparing password hashing")?,
        );
    info!(database = %redact(&config.database), "database ready");
    let directory = Arc::new(
        config
            .directory
            .clone()
            .build()
            .context("preparing directory sign-in")?,
    );
    let tls_files = tls::resolve(&config.tls, &config.data_dir, config.http, &public_ips)?;
    let tls_config = match &tls_files {
        Some((cert, key)) => Some(RustlsConfig::from_config(tls::server_config(cert, key)?)),
        None => None,
    };

    // Bind HTTP before starting the SFU, so a taken port fails fast with nothing to undo.
    let listener = TcpListener::bind(config.http)
        .with_context(|| format!("binding HTTP listener on {}", config.http))?;
    let http_addr = listener.local_addr()?;

    // Meetings a restart interrupted carry on: their snapshots, and the key their guests'
    // resume tokens are signed with.
    let resume_key = ResumeKey::from_bytes(
        store
            .resume_key()
            .await
            .context("reading the resume-token key")?,
    );
    let interrupted =
        live_meetings_to_restore(&store, SystemClock.now(), config.sfu_limits.resume_window).await;

    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    let sfu = SfuHandle::spawn_with_events(
        SfuConfig {
            media_bind: config.media_bind,
            ice_tcp_port: config.ice_tcp_port,
            public_ips: public_ips.clone(),
            limits: config.sfu_limits.clone(),
            resume_key,
        },
        events_tx,
    )
    .with_context(|| format!("starting the SFU on UDP {}", config.media_bind))?;
    if !interrupted.is_empty() {
        info!(
            meetings = interrupted.len(),
            "restoring meetings a restart interrupted"
        );
    }
    // Before the HTTP server starts, so nobody joins a fresh room in their place.
    sfu.restore(interrupted);
    info!(
        media = %sfu.local_media_addr(),
        public_ips = ?public_ips,
        "media socket ready"
    );

    // The built-in TURN server relays to the SFU's media sockets, so it starts after them.
    let (turn, _running_turn) = match start_turn(&config, &sfu, &public_ips, &tls_files).await {
        Ok(started) => started,
        Err(e) => {
            stop_sfu(sfu).await;
            return Err(e);
        }
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let stats = Arc::new(WsStats::default());
    let sockets = Arc::new(LiveSockets::default());
    let http_policy = Arc::new(HttpPolicy {
        hsts: match (&tls_config, config.hsts_max_age) {
            (Some(_), age) if age > 0 => HeaderValue::from_str(&format!("max-age={age}")).ok(),
            _ => None,
        },
        metrics: config.metrics.clone(),
    });
    let mut accounts = config.accounts;
    accounts.secure_cookies = tls_config.is_some();
    let purger = tokio::spawn(purge_periodically(
        store.clone(),
        accounts.lockout,
        config.audit_retention_secs,
        config
            .directory
            .oidc
            .as_ref()
            .map(|(o, _)| o.login_ttl_secs),
    ));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (webhooks, webhook_worker) = webhooks::start(store.clone(), config.webhooks.clone())?;
    let dashboard = Dashboard::new(config.dashboard);
    let calendar = crate::calendar::start(store.clone(), config.calendar.clone());
    let event_writer = tokio::spawn(store_events(
        store.clone(),
        clock.clone(),
        events,
        Some(sfu.clone()),
        config.live_save.max(MIN_SAVE_RETRY),
        webhooks.clone(),
        dashboard.clone(),
    ));
    let app = router_with_api(
        AppState {
            sfu: Arc::new(sfu.clone()),
            limits: config.ws,
            gate: Arc::new(JoinGate::new(
                store.clone(),
                accounts,
                clock.clone(),
                config.sfu_limits.minute,
            )),
            stats: Arc::clone(&stats),
            shutdown: shutdown_rx,
            sockets: Arc::clone(&sockets),
            http: http_policy,
            turn: turn.map(Arc::new),
            checks: Arc::default(),
            places: Arc::default(),
            webhooks: Arc::clone(webhooks.stats()),
        },
        Some(ApiState {
            store: store.clone(),
            settings: accounts,
            clock,
            sfu: Some(sfu.clone()),
            sockets,
            directory,
            webhooks,
            dashboard,
            calendar,
        }),
    );

    let handle = axum_server::Handle::new();
    let scheme = if tls_config.is_some() {
        "https"
    } else {
        "http"
    };
    // Connect info gives the WebSocket logs the peer's address.
    let make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    // TCP_NODELAY: signalling is many small messages, often several in a row to one client
    // (a `track_published` and its `offer`, an MLS commit and the next propose); with Nagle
    // each one after the first waits for the client's delayed ACK, 40 ms on Linux.
    let mut server = match tls_config {
        Some(tls) => tokio::spawn(
            axum_server::from_tcp_rustls(listener, tls)
                .map(|rustls| rustls.acceptor(NoDelayAcceptor::new()))
                .handle(handle.clone())
                .serve(make_service),
        ),
        None => tokio::spawn(
            axum_server::from_tcp(listener)
                .acceptor(NoDelayAcceptor::new())
                .handle(handle.clone())
                .serve(make_service),
        ),
    };
    info!(url = %format!("{scheme}://{http_addr}"), "veche is listening");
    if http_addr.ip().is_unspecified() {
        let urls: Vec<String> = public_ips
            .iter()
            .map(|ip| format!("{scheme}://{}", SocketAddr::new(*ip, http_addr.port())))
            .collect();
        info!(
            ?urls,
            "listening on all interfaces; open the page at one of these"
        );
    }

    let served = tokio::select! {
        result = &mut server => Some(result),
        () = shutdown_signal() => None,
    };
    if let Some(result) = served {
        // The server stopped on its own: that is an error, but the SFU still gets a clean stop.
        stop_sfu(sfu).await;
        finish_events(event_writer).await;
        webhook_worker.stop(DRAIN_TIMEOUT).await;
        purger.abort();
        store.close().await;
        return match result {
            Ok(Ok(())) => Err(anyhow::anyhow!("HTTP server stopped unexpectedly")),
            Ok(Err(e)) => Err(e).context("HTTP server failed"),
            Err(e) => Err(e).context("HTTP server task failed"),
        };
    }

    info!("shutting down");
    // 1. Stop accepting; requests in flight get a moment to finish.
    handle.graceful_shutdown(Some(DRAIN_TIMEOUT));
    // 2. The SFU tells every participant and ends their event streams, so each WebSocket
    //    session sends that goodbye and closes.
    stop_sfu(sfu).await;
    // 3. Any session the SFU did not end is closed now.
    shutdown_tx.send_replace(true);
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while stats.connections.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "HTTP server error during shutdown"),
        Err(e) => warn!(error = %e, "HTTP server task failed during shutdown"),
    }
    finish_events(event_writer).await;
    webhook_worker.stop(DRAIN_TIMEOUT).await;
    purger.abort();
    store.close().await;
    info!("stopped");
    Ok(())
}

/// Starts the built-in TURN server if it is on; returns the TURN servers handed to browsers
/// (built in first, then any external ones) and the running server, which stops when dropped.
async fn start_turn(
    config: &Config,
    sfu: &SfuHandle,
    public_ips: &[IpAddr],
    tls_files: &Option<(PathBuf, PathBuf)>,
) -> anyhow::Result<(Option<TurnRest>, Option<RunningTurn>)> {
    let Some(builtin) = &config.turn_builtin else {
        return Ok((config.turn.clone(), None));
    };
    let secret = match &config.turn_secret {
        Some(s) => s.clone(),
        None => turn_server::stored_secret(&config.data_dir)?,
    };
    // TURN over TLS uses the HTTPS certificate, or the self-signed one when HTTP is plain.
    let (cert, key) = match tls_files {
        Some(files) => files.clone(),
        None => tls::resolve(&Tls::SelfSigned, &config.data_dir, config.http, public_ips)?
            .context("a self-signed certificate for TURN over TLS")?,
    };
    let tls_config = tls::server_config(&cert, &key)?;
    // Browsers reach the media at the advertised addresses: those, on the media ports.
    let media: Vec<SocketAddr> = sfu
        .local_media_addrs()
        .iter()
        .flat_map(|local| {
            public_ips
                .iter()
                .filter(|ip| ip.is_ipv4() == local.is_ipv4())
                .map(|ip| SocketAddr::new(*ip, local.port()))
        })
        .collect();
    let bind = config.media_bind.ip();
    let relay_ip = if bind.is_unspecified() {
        public_ips
            .iter()
            .copied()
            .find(|ip| ip.is_ipv4() == bind.is_ipv4())
            .unwrap_or(bind)
    } else {
        bind
    };
    let rest = TurnRest {
        urls: Vec::new(),
        secret,
        ttl: config.turn_ttl,
    };
    let running = builtin
        .start(rest.clone(), tls_config, media, relay_ip)
        .await?;
    let mut urls = running.urls(builtin.host.as_deref(), public_ips);
    if let Some(external) = &config.turn {
        urls.extend(external.urls.iter().cloned());
    }
    Ok((Some(TurnRest { urls, ..rest }), Some(running)))
}

/// Waits (briefly) for the SFU's last audit entries and usage records to be stored; the
/// SFU has stopped, so its event channel is closed and the writer ends once it is drained.
async fn finish_events(writer: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(DRAIN_TIMEOUT, writer).await.is_err() {
        warn!("gave up storing the last meeting events");
    }
}

/// Expired sessions, stale lockout counters and audit entries past their retention are
/// deleted hourly (and at start), off the request path.
async fn purge_periodically(
    store: Store,
    policy: LockoutPolicy,
    audit_retention_secs: Option<i64>,
    oidc_login_ttl_secs: Option<i64>,
) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tick.tick().await;
        if let Some(ttl) = oidc_login_ttl_secs
            && let Err(e) = store.purge_oidc_logins(SystemClock.now(), ttl).await
        {
            warn!(error = %e, "purging unfinished OpenID Connect sign-ins failed");
        }
        match store
            .purge_expired(SystemClock.now(), policy, audit_retention_secs)
            .await
        {
            Ok(n) if n > 0 => info!(
                rows = n,
                "purged expired sessions, lockouts and old audit entries"
            ),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "purging expired sessions failed"),
        }
    }
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `SfuHandle::shutdown` joins the SFU thread, so it runs off the async workers.
async fn stop_sfu(sfu: SfuHandle) {
    if let Err(e) = tokio::task::spawn_blocking(move || sfu.shutdown()).await {
        warn!(error = %e, "SFU shutdown panicked");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("SIGINT received"),
        () = terminate => info!("SIGTERM received"),
    }
}
