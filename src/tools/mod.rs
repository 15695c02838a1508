//! `httpcache-proxy cache ...`: tools that work on a cache directory, with the proxy running
//! or not. They only read entries, remove whole entry files (each removal is one atomic
//! unlink) and remove packed entries with tombstones written to a new pack of their own, so a
//! running proxy never sees half an entry; they never touch `tmp/` or a pack a running proxy
//! may be writing. A running proxy sees tombstones written here only after a restart.

mod progress;
mod warm;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::cache::key::key_of_url;
use crate::cache::meta::EntryKind;
use crate::cache::store::scan::{self, EntryFile};
use progress::Progress;

/// Arguments of `cache`.
#[derive(Args, Debug, Clone)]
pub struct CacheArgs {
    /// The cache directory (as the proxy's --cache-dir).
    #[arg(long, global = true, default_value = "./cache")]
    pub cache_dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: CacheAction,
}

/// The cache tools.
#[derive(Subcommand, Debug, Clone)]
pub enum CacheAction {
    /// Entries, bytes, and their spread by status and age.
    Stats,
    /// List stored responses (size, age, status, URL), optionally those under a prefix.
    Ls {
        /// Only URLs starting with this absolute URL.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Check every entry (head and body checksums, lengths, key); report broken ones.
    Verify {
        /// Remove the broken entries.
        #[arg(long)]
        fix: bool,
    },
    /// Remove a URL (with its Vary variants) or every URL under a prefix. A running proxy
    /// may still serve it (from memory, or a packed entry until it restarts): use PURGE or
    /// the admin API for that.
    Purge {
        /// The absolute URL to remove.
        #[arg(required_unless_present = "prefix", conflicts_with = "prefix")]
        url: Option<String>,
        /// Remove every URL starting with this absolute URL.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Fetch each URL of FILE (one per line, # comments) through a running proxy, which
    /// stores them.
    Warm {
        /// The list of URLs.
        file: PathBuf,
        /// The proxy to fetch through.
        #[arg(long, default_value = "http://127.0.0.1:8888")]
        proxy: String,
    },
}

/// Runs a cache tool; `Ok(false)` means it found problems (non-zero exit).
pub fn run(args: &CacheArgs) -> anyhow::Result<bool> {
    if let CacheAction::Warm { file, proxy } = &args.action {
        return warm::run(file, proxy);
    }
    let dir = &args.cache_dir;
    if !dir.is_dir() {
        bail!("--cache-dir {}: not a directory", dir.display());
    }
    let files =
        scan::entry_files(dir).with_context(|| format!("--cache-dir {}: cannot read", dir.display()))?;
    match &args.action {
        CacheAction::Stats => stats(&files),
        CacheAction::Ls { prefix } => ls(&files, prefix.as_deref()),
        CacheAction::Verify { fix } => verify(dir, &files, *fix),
        CacheAction::Purge { url, prefix } => purge(dir, &files, url.as_deref(), prefix.as_deref()),
        CacheAction::Warm { .. } => unreachable!("handled above"),
    }
}

fn age_of(stored: SystemTime) -> u64 {
    SystemTime::now().duration_since(stored).map_or(0, |d| d.as_secs())
}

fn stats(files: &[EntryFile]) -> anyhow::Result<bool> {
    let mut progress = Progress::new("reading", files.len() as u64);
    let (mut responses, mut markers, mut unreadable, mut bytes) = (0u64, 0u64, 0u64, 0u64);
    let mut by_status = std::collections::BTreeMap::<u16, u64>::new();
    let mut oldest: Option<u64> = None;
    for f in files {
        bytes += f.size;
        match scan::read_head(f) {
            Ok(head) if head.kind == EntryKind::Response => {
                responses += 1;
                *by_status.entry(head.status.as_u16()).or_default() += 1;
                let age = age_of(head.response_time);
                oldest = Some(oldest.map_or(age, |o| o.max(age)));
            }
            Ok(_) => markers += 1,
            Err(_) => unreadable += 1,
        }
        progress.inc();
    }
    progress.finish();
    println!(
        "entries: {} ({responses} responses, {markers} vary markers, {unreadable} unreadable)",
        files.len()
    );
    println!("bytes: {bytes}");
    let statuses: Vec<String> = by_status.iter().map(|(s, n)| format!("{s}: {n}")).collect();
    println!("by status: {}", statuses.join(", "));
    if let Some(age) = oldest {
        println!("oldest response: stored {age} s ago");
    }
    Ok(true)
}

fn ls(files: &[EntryFile], prefix: Option<&str>) -> anyhow::Result<bool> {
    let prefix = prefix.map(key_of_url).transpose().map_err(anyhow::Error::msg).context("--prefix")?;
    println!("{:>10} {:>8} {:>6} url", "bytes", "age_s", "status");
    for f in files {
        let Ok(head) = scan::read_head(f) else { continue };
        if head.kind != EntryKind::Response
            || prefix.as_ref().is_some_and(|p| !head.key.starts_with(p.as_str()))
        {
            continue;
        }
        let url = head.key.replace('\n', " ");
        println!("{:>10} {:>8} {:>6} {url}", f.size, age_of(head.response_time), head.status.as_u16());
    }
    Ok(true)
}

fn verify(dir: &Path, files: &[EntryFile], fix: bool) -> anyhow::Result<bool> {
    let mut progress = Progress::new("verifying", files.len() as u64);
    let mut broken = Vec::new();
    for f in files {
        if let Err(e) = scan::verify(f) {
            progress.println(&format!("broken: {f} ({e})"));
            broken.push(f);
        }
        progress.inc();
    }
    progress.finish();
    // Removed together: packed ones need only one new pack of tombstones.
    if fix && !broken.is_empty() {
        let removed = scan::remove(dir, &broken);
        println!("removed {removed} broken entries");
    }
    println!(
        "verified {} entries: {} ok, {} broken{}",
        files.len(),
        files.len() - broken.len(),
        broken.len(),
        if fix && !broken.is_empty() { " (removed)" } else { "" }
    );
    Ok(broken.is_empty() || fix)
}

fn purge(dir: &Path, files: &[EntryFile], url: Option<&str>, prefix: Option<&str>) -> anyhow::Result<bool> {
    let matches: Box<dyn Fn(&str) -> bool> = match (url, prefix) {
        (Some(u), None) => {
            let key = key_of_url(u).map_err(anyhow::Error::msg)?;
            let below = format!("{key}\n");
            Box::new(move |k| k == key || k.starts_with(&below))
        }
        (None, Some(p)) => {
            let key = key_of_url(p).map_err(anyhow::Error::msg).context("--prefix")?;
            Box::new(move |k| k.starts_with(&key))
        }
        _ => bail!("give a URL or --prefix"),
    };
    let mut progress = Progress::new("purging", files.len() as u64);
    let mut matched = Vec::new();
    for f in files {
        if scan::read_head(f).is_ok_and(|h| matches(&h.key)) {
            matched.push(f);
        }
        progress.inc();
    }
    progress.finish();
    let removed = scan::remove(dir, &matched);
    println!("purged {removed} entries");
    Ok(removed > 0)
}
