//! The reports the subcommands write (`--out` JSON) and `plot` reads: types only, so that a
//! reader of a report needs none of the code that made it.

pub mod churn;
pub mod compare;
pub mod scale;
pub mod sim;
