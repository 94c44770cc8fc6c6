//! sled 0.34.7 against fjall 2 on case-escrow's write pattern, one thread, no server.
//!
//! Per receipt, as the writer does: a miss on its request id, a miss on its bank
//! reference and a hit on its case's number index; then, per batch of 8,189 receipts
//! (sorted by key, as the service applies them), a request record, a bank reference and
//! a facts line per receipt and a case record per case touched. sled gets the keys one
//! by one (how the service applies a batch since it dropped `apply_batch`); fjall gets
//! one atomic write batch, written to the OS (not fsynced: the service's own journal is
//! the durable record). Prints throughput, the time of reads and of applies per receipt,
//! CPU per receipt (every thread of the process) and RSS.
//!
//! `engines <sled|sled-fast|fjall> <dir> <receipts> [cases] [first]`; `first` > 0 skips creating
//! the case index (a later run on the same directory); `receipts` 0 only opens.

use std::collections::BTreeSet;
use std::error::Error;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng as _, RngExt as _, SeedableRng as _};

type Res<T> = Result<T, Box<dyn Error>>;

fn proc_field(file: &str, f: impl Fn(&str) -> Option<f64>) -> f64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| f(&s))
        .unwrap_or(f64::NAN)
}

fn rss_mib() -> f64 {
    proc_field("/proc/self/status", |s| {
        let line = s.lines().find(|l| l.starts_with("VmRSS"))?;
        Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
    })
}

fn cpu_s() -> f64 {
    proc_field("/proc/self/stat", |s| {
        let f: Vec<&str> = s.rsplit(')').next()?.split_whitespace().collect();
        Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
    })
}

trait Kv {
    fn get(&self, k: &[u8]) -> Res<Option<Vec<u8>>>;
    fn apply(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Res<()>;
}

struct Sled(sled::Tree);

impl Kv for Sled {
    fn get(&self, k: &[u8]) -> Res<Option<Vec<u8>>> {
        Ok(self.0.get(k)?.map(|v| v.to_vec()))
    }
    fn apply(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Res<()> {
        for (k, v) in batch {
            self.0.insert(k.as_slice(), v.as_slice())?;
        }
        Ok(())
    }
}

struct Fjall(fjall::Keyspace, fjall::PartitionHandle);

impl Kv for Fjall {
    fn get(&self, k: &[u8]) -> Res<Option<Vec<u8>>> {
        Ok(self.1.get(k)?.map(|v| v.to_vec()))
    }
    fn apply(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Res<()> {
        let mut b = (self.0.batch()).durability(Some(fjall::PersistMode::Buffer));
        for (k, v) in batch {
            b.insert(&self.1, k.as_slice(), v.as_slice());
        }
        Ok(b.commit()?)
    }
}

/// Both with the service's cache size (256 MiB); sled with its flush interval, in
/// its default mode (`sled`, LowSpace) or in HighThroughput (`sled-fast`).
fn open(engine: &str, dir: &str) -> Res<Box<dyn Kv>> {
    Ok(match engine {
        "sled" | "sled-fast" => {
            let mode = if engine == "sled" {
                sled::Mode::LowSpace
            } else {
                sled::Mode::HighThroughput
            };
            let db = sled::Config::new()
                .path(dir)
                .cache_capacity(256 << 20)
                .flush_every_ms(Some(1000))
                .mode(mode)
                .open()?;
            Box::new(Sled(db.open_tree("ledger")?))
        }
        "fjall" => {
            let ks = fjall::Config::new(dir)
                .cache_size(256 << 20)
                .fsync_ms(None)
                .open()?;
            let p = ks.open_partition("ledger", fjall::PartitionCreateOptions::default())?;
            Box::new(Fjall(ks, p))
        }
        other => return Err(format!("engine {other}: sled, sled-fast or fjall").into()),
    })
}

fn case_index(case: u64) -> Vec<u8> {
    format!("n（2024）云0102执{case}号").into_bytes()
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| {
        args.get(i)
            .ok_or("engines <sled|sled-fast|fjall> <dir> <receipts> [cases] [first]")
    };
    let (engine, dir) = (arg(1)?.clone(), arg(2)?.clone());
    let receipts: u64 = arg(3)?.parse()?;
    let cases: u64 = args.get(4).map_or(Ok(1000), |s| s.parse())?;
    let first: u64 = args.get(5).map_or(Ok(0), |s| s.parse())?;
    let t = Instant::now();
    let kv = open(&engine, &dir)?;
    println!(
        "{engine}: open {:.3} s, rss {:.0} MiB",
        t.elapsed().as_secs_f64(),
        rss_mib()
    );
    if receipts == 0 {
        return Ok(());
    }
    if first == 0 {
        let index: Vec<_> = (0..cases).map(|c| (case_index(c), vec![7u8; 16])).collect();
        kv.apply(&index)?;
    }
    const BATCH: u64 = 8189;
    let mut rng = StdRng::seed_from_u64(first + 1);
    let (started, cpu0) = (Instant::now(), cpu_s());
    let (mut reading, mut applying) = (0f64, 0f64);
    let mut seq = first;
    let mut batches = 0u64;
    while seq < first + receipts {
        let mut batch = Vec::with_capacity(3 * BATCH as usize + 1000);
        let mut touched = BTreeSet::new();
        let t = Instant::now();
        for _ in 0..BATCH {
            seq += 1;
            let request = format!("r{:016x}{:016x}", rng.next_u64(), rng.next_u64()).into_bytes();
            let bank_ref = format!("b0123456789abcdefICBC{seq:012}").into_bytes();
            let case = rng.random_range(0..cases.max(1));
            if kv.get(&request)?.is_some() || kv.get(&bank_ref)?.is_some() {
                return Err("a new key was found".into());
            }
            if kv.get(&case_index(case))?.is_none() {
                return Err(format!("case {case} is not indexed").into());
            }
            let mut facts = format!("q{case:024}").into_bytes();
            facts.extend_from_slice(&(!seq).to_be_bytes());
            batch.push((request, vec![1u8; 40]));
            batch.push((bank_ref, seq.to_be_bytes().to_vec()));
            batch.push((facts, vec![2u8; 35]));
            touched.insert(case);
        }
        for case in touched {
            batch.push((format!("c{case:016}").into_bytes(), vec![3u8; 200]));
        }
        batch.sort();
        reading += t.elapsed().as_secs_f64();
        let t = Instant::now();
        kv.apply(&batch)?;
        applying += t.elapsed().as_secs_f64();
        batches += 1;
        if batches.is_multiple_of(61) {
            let done = seq - first;
            let rate = done as f64 / started.elapsed().as_secs_f64();
            println!("  {done} receipts: {rate:.0}/s, rss {:.0} MiB", rss_mib());
        }
    }
    let n = (seq - first) as f64;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{engine}: {n} receipts in {elapsed:.1} s = {:.0}/s; reads {:.2} µs a receipt, apply {:.2} µs; CPU {:.1} µs; rss {:.0} MiB",
        n / elapsed,
        reading * 1e6 / n,
        applying * 1e6 / n,
        (cpu_s() - cpu0) * 1e6 / n,
        rss_mib()
    );
    Ok(())
}
