//! `s3vfs rm`: deletes one database's own objects, as [`admin::remove`] does, after
//! showing what [`admin::plan_removal`] found and asking.

use crate::options::{database, S3Options};
use crate::{confirm, count};
use s3vfs::admin::{self, RemovalPlan};
use s3vfs::error::{Error, Result};

/// What a plan deletes, for people.
fn what(plan: &RemovalPlan) -> String {
    let mut what = format!(
        "{} ({} bytes)",
        count(plan.blocks.len(), "block"),
        plan.bytes()
    );
    if !plan.journal.is_empty() {
        what += &format!(", its journal ({})", count(plan.journal.len(), "block"));
    }
    if !plan.wal.is_empty() {
        what += &format!(", its WAL ({})", count(plan.wal.len(), "block"));
    }
    if !plan.marks.is_empty() {
        what += &format!(", {}", count(plan.marks.len(), "reader mark"));
    }
    if plan.lease {
        what += ", the lease object";
    }
    what
}

pub fn run(s3: &S3Options, url: &str, yes: bool) -> Result<()> {
    let db = database(s3, url, None)?;
    let name = db.url();
    let plan = admin::plan_removal(&db)?;
    admin::refuse_if_written(&db, "delete")?;
    if !yes && !confirm(&format!("delete {name}: {}? [y/N] ", what(&plan))) {
        return Err(Error::Refused(format!(
            "not confirmed: nothing was deleted from {name} (answer y, or pass --yes)"
        )));
    }
    let done = admin::remove(&db)?;
    let kept = match done.others {
        0 => String::new(),
        n => format!(
            "; {} under {name}/ that belong to no database left alone",
            count(n, "other object")
        ),
    };
    let versions = match done.swept {
        None => String::new(),
        Some(swept) => format!(
            "\nthe bucket keeps versions: {} of its lease, journal and reader marks removed; every version of its blocks is kept (the database can be restored from them; a lifecycle rule that expires noncurrent versions frees the space)",
            count(swept.total(), "old version")
        ),
    };
    println!(
        "deleted {name}: {}; {} in all{kept}{versions}",
        what(&done),
        count(done.objects(), "object")
    );
    Ok(())
}
