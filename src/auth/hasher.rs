//! A small fixed pool of threads for argon2, each owning its 19 MiB work buffer.
//!
//! argon2 is memory-hard by design. Run on `spawn_blocking`, every concurrent login allocated
//! its own buffer on whichever blocking thread it landed, and the C allocator kept those
//! per-thread blocks: RSS reached gigabytes after a few hundred logins, and a burst of logins
//! made all of them slow at once. A pool sized to the cores bounds both: at most `threads`
//! hashes run at a time, each reusing its thread's buffer, and the rest wait in a bounded queue.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::rngs::OsRng;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

/// Jobs waiting for a hashing thread before new ones are refused.
const QUEUE: usize = 4096;

enum Job {
    Hash(String, oneshot::Sender<Option<String>>),
    /// `None` for an unknown user: verified against a throw-away hash so it costs the same.
    Verify(String, Option<String>, oneshot::Sender<bool>),
}

/// The hashing threads; dropping the pool ends them.
#[derive(Debug)]
pub struct PasswordPool {
    jobs: SyncSender<Job>,
    params: Params,
}

/// The pool is saturated or gone.
#[derive(Debug, thiserror::Error)]
#[error("password hashing is overloaded")]
pub struct Overloaded;

impl PasswordPool {
    /// Starts `threads` hashing threads (at least one) that hash new passwords with `params`.
    pub fn new(threads: usize, params: Params) -> PasswordPool {
        PasswordPool::with_queue(threads, params, QUEUE)
    }

    /// As [`new`](Self::new), with at most `queue` jobs waiting before new ones are refused.
    fn with_queue(threads: usize, params: Params, queue: usize) -> PasswordPool {
        let (jobs, queue) = sync_channel::<Job>(queue);
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..threads.max(1) {
            let queue = queue.clone();
            let params = params.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || worker(&queue, &params))
                .expect("spawning a hashing thread");
        }
        PasswordPool { jobs, params }
    }

    /// A pool sized to the machine (at most four threads: hashing must not starve the rest).
    pub fn for_this_machine(params: Params) -> PasswordPool {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        PasswordPool::new(cores.min(4), params)
    }

    /// Whether `phc` is an argon2id hash made with this pool's parameters; a stored hash that is
    /// not gets replaced after the next successful check, so changing the configured cost
    /// reaches every active user without a migration.
    pub fn is_current(&self, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let same_version = parsed.version == Some(u32::from(Version::V0x13));
        Algorithm::try_from(parsed.algorithm) == Ok(Algorithm::Argon2id)
            && same_version
            && Params::try_from(&parsed).is_ok_and(|p| {
                (p.m_cost(), p.t_cost(), p.p_cost())
                    == (
                        self.params.m_cost(),
                        self.params.t_cost(),
                        self.params.p_cost(),
                    )
            })
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash(&self, password: String) -> Result<String, Overloaded> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Hash(password, reply))?;
        answer.await.ok().flatten().ok_or(Overloaded)
    }

    /// Whether `password` matches the PHC string; false for a malformed one, and (after the
    /// same work) for `None`, the hash of a user that does not exist.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, Overloaded> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Verify(password, phc, reply))?;
        answer.await.map_err(|_| Overloaded)
    }

    fn submit(&self, job: Job) -> Result<(), Overloaded> {
        match self.jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Overloaded),
        }
    }
}

fn worker(queue: &Mutex<Receiver<Job>>, params: &Params) {
    let mut memory: Vec<Block> = Vec::new();
    let mut dummy: Option<String> = None;
    loop {
        let job = {
            let Ok(queue) = queue.lock() else { return };
            match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        match job {
            Job::Hash(password, reply) => {
                let _ = reply.send(hash_with(&mut memory, params, &password));
            }
            Job::Verify(password, Some(phc), reply) => {
                let _ = reply.send(verify_with(&mut memory, &password, &phc));
            }
            Job::Verify(password, None, reply) => {
                // Made with the configured parameters, so an unknown login costs what a
                // current user's does.
                let dummy = dummy.get_or_insert_with(|| {
                    hash_with(&mut memory, params, &crate::auth::secrets::random_hex(16))
                        .unwrap_or_default()
                });
                verify_with(&mut memory, &password, dummy);
                let _ = reply.send(false);
            }
        }
    }
}

/// The argon2id parameters for `memory_kib` and `passes` (one lane: parallel lanes would only
/// spread one login over more cores, the pool already runs logins side by side).
pub fn params(memory_kib: u32, passes: u32) -> Option<Params> {
    Params::new(memory_kib, passes, 1, None).ok()
}

/// Hashes with `params` into `memory` (grown once, then reused).
pub fn hash_with(memory: &mut Vec<Block>, params: &Params, password: &str) -> Option<String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.as_salt().decode_b64(&mut salt_bytes).ok()?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    memory.resize(params.block_count().max(memory.len()), Block::default());
    let memory = &mut memory[..params.block_count()];
    argon2
        .hash_password_into_with_memory(password.as_bytes(), salt_raw, &mut out, memory)
        .ok()?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: params.try_into().ok()?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).ok()?),
    };
    Some(phc.to_string())
}

/// Verifies against a PHC string with whatever parameters it names, in `memory`.
pub fn verify_with(memory: &mut Vec<Block>, password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
        None => Version::default(),
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let expected = expected.as_bytes();
    let mut out = vec![0u8; expected.len()];
    // A stored hash with a huge memory cost must not make us allocate without bound.
    if params.block_count() > 1 << 20 {
        return false;
    }
    memory.resize(params.block_count().max(memory.len()), Block::default());
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let blocks = &mut memory[..params.block_count()];
    if argon2
        .hash_password_into_with_memory(password.as_bytes(), salt_raw, &mut out, blocks)
        .is_err()
    {
        return false;
    }
    out.ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Params {
        use crate::config::{DEFAULT_PASSWORD_HASH_MEMORY_KIB, DEFAULT_PASSWORD_HASH_PASSES};
        params(
            DEFAULT_PASSWORD_HASH_MEMORY_KIB,
            DEFAULT_PASSWORD_HASH_PASSES,
        )
        .unwrap()
    }

    #[test]
    fn pooled_hashes_interoperate_with_the_reference_implementation() {
        let mut memory = Vec::new();
        let defaults = defaults();
        let phc = hash_with(&mut memory, &defaults, "correct horse").unwrap();
        let prefix = format!(
            "$argon2id$v=19$m={},t={},p=1$",
            defaults.m_cost(),
            defaults.t_cost()
        );
        assert!(phc.starts_with(&prefix), "{phc}");
        assert!(
            crate::auth::secrets::verify_password("correct horse", &phc),
            "reference verifies ours"
        );
        let reference = crate::auth::secrets::hash_password("battery staple");
        assert!(
            verify_with(&mut memory, "battery staple", &reference),
            "we verify the reference's"
        );
        assert!(!verify_with(&mut memory, "battery stapler", &reference));
        assert!(!verify_with(&mut memory, "x", "not a hash"));
        assert_eq!(
            memory.len(),
            defaults.block_count(),
            "the buffer is reused, not regrown"
        );
    }

    #[test]
    fn a_smaller_cost_reuses_the_larger_buffer() {
        let mut memory = Vec::new();
        let big = params(64, 2).unwrap();
        let small = params(16, 1).unwrap();
        let a = hash_with(&mut memory, &big, "pw").unwrap();
        let b = hash_with(&mut memory, &small, "pw").unwrap();
        assert_eq!(memory.len(), big.block_count());
        assert!(verify_with(&mut memory, "pw", &a) && verify_with(&mut memory, "pw", &b));
        assert!(b.starts_with("$argon2id$v=19$m=16,t=1,p=1$"), "{b}");
    }

    #[test]
    fn other_parameters_in_stored_hashes_still_verify() {
        let params = Params::new(1024, 3, 1, None).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let phc = argon2::PasswordHasher::hash_password(
            &Argon2::new(Algorithm::Argon2i, Version::V0x13, params),
            b"pw",
            &salt,
        )
        .unwrap()
        .to_string();
        let mut memory = Vec::new();
        assert!(verify_with(&mut memory, "pw", &phc));
        assert!(!verify_with(&mut memory, "pW", &phc));
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_not_answered_wrong() {
        // One thread and room for one waiting job: of those submitted at once, at most two
        // fit (one hashing, one queued), so at least one is refused, and every accepted one
        // still gets its true answer.
        let cost = params(16 * 1024, 2).unwrap();
        let pool = PasswordPool::with_queue(1, cost.clone(), 1);
        let phc = hash_with(&mut Vec::new(), &cost, "pw").unwrap();
        // Ten at once rather than three, so a scheduler pause between two submissions (the
        // worker finishing a 10 ms hash meanwhile) cannot let them all in.
        let answers = futures_util::future::join_all(
            (0..10).map(|_| pool.verify("pw".into(), Some(phc.clone()))),
        )
        .await;
        assert!(
            answers.iter().any(|r| matches!(r, Err(Overloaded))),
            "{answers:?}"
        );
        assert!(
            answers
                .iter()
                .all(|r| matches!(r, Err(Overloaded) | Ok(true))),
            "{answers:?}"
        );
    }

    #[tokio::test]
    async fn the_pool_answers() {
        let pool = PasswordPool::new(2, params(256, 1).unwrap());
        let phc = pool.hash("s3cret-pass".into()).await.unwrap();
        assert!(pool.is_current(&phc), "{phc}");
        assert!(!PasswordPool::new(1, params(512, 1).unwrap()).is_current(&phc));
        assert!(!PasswordPool::new(1, params(256, 2).unwrap()).is_current(&phc));
        assert!(!pool.is_current("not a hash"));
        assert!(pool
            .verify("s3cret-pass".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!pool.verify("wrong".into(), Some(phc)).await.unwrap());
        assert!(!pool.verify("s3cret-pass".into(), None).await.unwrap());
    }
}
