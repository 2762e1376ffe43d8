//! SWIM's promises on random fault schedules, in the deterministic simulator: after each
//! schedule's faults end, the fleet agrees within the bound its timings imply, holds every
//! newest record, declared no reachable node dead beyond a bound, and forgets the gone.
//! A failure prints its seed and the command that replays it (`edge-fleet sim --soak`
//! runs many more seeds).

use bocluster::membership::sim::properties::{check, CheckRun};

/// A few seeds, few enough for CI's debug build.
const SEEDS: [u64; 4] = [1, 2, 3, 4];

#[test]
fn random_fault_schedules_end_in_agreement_within_the_bound() {
    let mut failures = Vec::new();
    for seed in SEEDS {
        let run = CheckRun::new(10, seed);
        match check(&run) {
            Ok(outcome) => eprintln!(
                "seed {seed}: {} faults, agreed {:?} after the last (bound {:?}), {} false positives",
                outcome.scenario.events.len(),
                outcome.settled_after,
                outcome.bound,
                outcome.false_positives
            ),
            Err(failure) => failures.push(failure.to_string()),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
