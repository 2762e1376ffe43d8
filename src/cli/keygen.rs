//! `bocluster keygen`: prints a new cluster key, as `serf keygen` does.

use clap::Args;

use crate::cluster_key::{generate_key, GENERATED_KEY_BYTES};

#[derive(Debug, Args)]
pub struct KeygenArgs {}

/// Prints one key (32 random bytes from the operating system, base64) on stdout; exit 1 when
/// no random bytes can be had.
pub fn run(_args: KeygenArgs) -> u8 {
    match generate_key() {
        Ok(key) => {
            println!("{key}");
            0
        }
        Err(e) => {
            eprintln!("bocluster keygen: {e} (a key is {GENERATED_KEY_BYTES} random bytes)");
            1
        }
    }
}
