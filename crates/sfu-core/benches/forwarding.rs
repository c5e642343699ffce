//! Forwarding cost of the room's media engine alone (no sockets, no kernel): one publisher's
//! VP8 + Opus frames to the 11 other members of a twelve-person room, in virtual time, with
//! the str0m clients of `tests/support/world.rs` answering as browsers do (RTCP, TWCC, NACKs). Only the
//! room's own work is timed and its heap allocations counted: `handle_receive`,
//! `handle_timeout` and draining its outputs.
//!
//! `cargo bench -p sfu-core --bench forwarding` prints allocations and nanoseconds per egress
//! packet, then criterion's timing of one frame (two ingress, 22 egress packets).

#[path = "../tests/support/netsim.rs"]
#[allow(dead_code)]
mod netsim;
#[path = "../tests/support/world.rs"]
mod world;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use str0m::media::Mid;
use world::{key, Meter, World};

// Counts allocations only while a dhat profiler runs (the allocation pass); otherwise it passes
// straight to the system allocator.
#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BUSY_NS: AtomicU64 = AtomicU64::new(0);
static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

thread_local! {
    /// When the room's current piece of work started, and the allocation count then.
    static METERING: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
}

fn blocks() -> u64 {
    if COUNTING.load(Ordering::Relaxed) {
        dhat::HeapStats::get().total_blocks
    } else {
        0
    }
}

// The bench measures wall time; the core itself never reads the clock.
#[allow(clippy::disallowed_methods)]
fn start() {
    METERING.with(|m| m.set(Some((Instant::now(), blocks()))));
}

fn stop() {
    if let Some((at, before)) = METERING.with(|m| m.take()) {
        BUSY_NS.fetch_add(at.elapsed().as_nanos() as u64, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(blocks() - before, Ordering::Relaxed);
    }
}

/// A room with one publisher and `subscribers` subscribers to it, connected and warmed up.
fn room(subscribers: u64) -> (World, Mid, Mid) {
    let mut world = World::new(0.0, 1);
    let (audio, video) = world.publish(key(1), 7, "10.0.0.7:5000");
    for n in 0..subscribers {
        world.subscribe(key(10 + n), 7, &format!("10.0.1.{}:5000", n + 1));
    }
    world.meter = Meter { start, stop };
    world.send_media(key(1), audio, video, 0, 100);
    let _ = world.room.take_counters();
    (world, audio, video)
}

fn forwarding(c: &mut Criterion) {
    let (mut world, audio, video) = room(11);
    // The allocation pass, under the profiler (which slows every allocation: its time is not
    // the one reported).
    {
        let _profiler = dhat::Profiler::builder().testing().build();
        COUNTING.store(true, Ordering::Relaxed);
        ALLOCATIONS.store(0, Ordering::Relaxed);
        world.send_media(key(1), audio, video, 100, 1000);
        world.run(Duration::from_millis(200));
        COUNTING.store(false, Ordering::Relaxed);
    }
    let counters = world.room.take_counters();
    let egress = counters.egress_packets.max(1);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    // The time pass.
    BUSY_NS.store(0, Ordering::Relaxed);
    world.send_media(key(1), audio, video, 1100, 1000);
    world.run(Duration::from_millis(200));
    let timed = world.room.take_counters().egress_packets.max(1);
    println!(
        "room work per egress packet ({} ingress, {egress} egress): {:.2} heap allocations, {} ns",
        counters.ingress_packets,
        allocations as f64 / egress as f64,
        BUSY_NS.load(Ordering::Relaxed) / timed,
    );

    let mut next = 2100;
    c.bench_function("one frame (video + audio) to 11 subscribers", |b| {
        b.iter_custom(|frames| {
            BUSY_NS.store(0, Ordering::Relaxed);
            world.send_media(key(1), audio, video, next, frames);
            next += frames;
            Duration::from_nanos(BUSY_NS.load(Ordering::Relaxed))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = forwarding
}
criterion_main!(benches);
