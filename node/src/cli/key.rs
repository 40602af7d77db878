//! `ledger key`: a fresh API key, and the line a node's settings list it by.

use clap::Args;
use ledger_node::auth::{self, Role};

#[derive(Args)]
pub struct KeyArgs {
    /// The role the key is for: client, operator or node.
    #[arg(long, value_parser = role)]
    role: Role,
    /// A name for the key in the settings (who holds it).
    #[arg(long)]
    name: String,
}

fn role(text: &str) -> Result<Role, String> {
    Role::ALL
        .into_iter()
        .find(|role| role.name() == text)
        .ok_or_else(|| format!("{text:?}: one of client, operator, node"))
}

pub fn run(args: KeyArgs) -> anyhow::Result<()> {
    let key = auth::new_key()?;
    println!("# the key: give it to its holder (LEDGER_API_KEY); no node keeps it");
    println!("{key}");
    println!("# every node's settings:");
    println!(
        "[[auth.keys]]\nname = {:?}\nrole = \"{}\"\nsha256 = \"{}\"",
        args.name,
        args.role.name(),
        auth::digest_hex(&key)
    );
    Ok(())
}
