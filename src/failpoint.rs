//! Crash points for the fault tests (tests/faults.rs): a real process stops at a named step
//! of a rotation so the test can SIGKILL it there and prove a crash at that step loses nothing.
//!
//! Test mode only: honoured when `TENANT_VAULT_TEST_FAILPOINT=<step>` is set in the process
//! environment, which no flag, route or setting of a deployment reaches. At that step the
//! process prints `TENANT_VAULT_TEST_FAILPOINT reached: <step>` on stderr and waits forever
//! (holding whatever transaction it has open) until it is killed. Unset, a step costs one
//! read of a cached variable.

use std::sync::OnceLock;

/// The variable that names the step to stop at.
pub const ENV: &str = "TENANT_VAULT_TEST_FAILPOINT";

/// The steps a process can be stopped at. Names are what the variable takes.
pub mod steps {
    /// Master rotation: the rotation lock is held, nothing written yet.
    pub const MASTER_AFTER_LOCK: &str = "master-after-lock";
    /// Master rotation: version n+1 is in the source; the database is untouched.
    pub const MASTER_AFTER_SOURCE_WRITE: &str = "master-after-source-write";
    /// Master rotation: every data key re-wrapped inside the open transaction.
    pub const MASTER_AFTER_REWRAP: &str = "master-after-rewrap";
    /// Master rotation: committed; memory not yet updated.
    pub const MASTER_AFTER_COMMIT: &str = "master-after-commit";
    /// Data key rotation: committed (new active key), re-encryption not started.
    pub const DATA_KEY_AFTER_ROTATE: &str = "data-key-after-rotate";
    /// Re-encryption: one batch of ciphertexts replaced inside the open transaction.
    pub const REENCRYPT_AFTER_BATCH_WRITE: &str = "reencrypt-after-batch-write";
    /// Re-encryption: that batch committed.
    pub const REENCRYPT_AFTER_BATCH_COMMIT: &str = "reencrypt-after-batch-commit";
    /// Re-encryption: old keys destroyed inside the open transaction.
    pub const REENCRYPT_AFTER_DESTROY: &str = "reencrypt-after-destroy";

    pub const ALL: &[&str] = &[
        MASTER_AFTER_LOCK,
        MASTER_AFTER_SOURCE_WRITE,
        MASTER_AFTER_REWRAP,
        MASTER_AFTER_COMMIT,
        DATA_KEY_AFTER_ROTATE,
        REENCRYPT_AFTER_BATCH_WRITE,
        REENCRYPT_AFTER_BATCH_COMMIT,
        REENCRYPT_AFTER_DESTROY,
    ];
}

fn configured() -> Option<&'static str> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| {
        let at = std::env::var(ENV).ok().filter(|s| !s.is_empty())?;
        // A name no step has would silently never stop: say so loudly.
        if !steps::ALL.contains(&at.as_str()) {
            eprintln!(
                "{ENV}={at}: no such step (steps: {})",
                steps::ALL.join(", ")
            );
        }
        tracing::warn!(step = %at, "test fail point armed: this process will stop there");
        Some(at)
    })
    .as_deref()
}

/// Stops here forever if the test mode names this step.
pub async fn hit(step: &'static str) {
    if configured() != Some(step) {
        return;
    }
    {
        use std::io::Write as _;
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{ENV} reached: {step}");
        let _ = err.flush();
    }
    std::future::pending::<()>().await;
}
