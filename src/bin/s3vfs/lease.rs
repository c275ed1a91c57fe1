//! `s3vfs break-lease`: releases a database's writer lease deliberately, after showing
//! its holder and asking; [`admin::break_lease`] never overwrites a lease that changed
//! since (renewed or taken over).

use crate::confirm;
use crate::options::{database, S3Options};
use s3vfs::admin::{self, Broken};
use s3vfs::error::{Error, Result};
use s3vfs::lease::now_ms;

pub fn run(s3: &S3Options, url: &str, yes: bool) -> Result<()> {
    let db = database(s3, url, None)?;
    let name = db.url();
    let Some((record, _)) = admin::read_lease(&db)? else {
        return Err(Error::NotFound(format!(
            "no lease at {name}: nothing to break (no object {}.s3vfs-lease)",
            db.key
        )));
    };
    if !record.live(now_ms()) {
        println!("the lease of {name} is free already: nothing to break");
        return Ok(());
    }
    let holder = admin::holder(&record);
    let question = format!(
        "break the lease of {name}, held by {holder}? Its holder's transaction will fail at its next write [y/N] "
    );
    if !yes && !confirm(&question) {
        return Err(Error::Refused(format!(
            "not confirmed: the lease of {name} was left as it is (answer y, or pass --yes)"
        )));
    }
    match admin::break_lease(&db, &record.owner)? {
        Broken::Broken(r) => println!(
            "broke the lease of {name} (it was held by {}): writers may take it now",
            admin::holder(&r)
        ),
        Broken::AlreadyFree(_) => {
            println!("the lease of {name} was released meanwhile: nothing to break")
        }
    }
    Ok(())
}
