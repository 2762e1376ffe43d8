#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and exits non-zero if any of them crashes.
#
#   fuzz/run.sh [SECONDS]        # default 60 s per target
#
# Engine (FUZZ_ENGINE=cargo-fuzz|loop forces one; otherwise the first that is available):
#   cargo-fuzz  libFuzzer with AddressSanitizer, through `cargo fuzz` (install it with
#               `cargo install cargo-fuzz --locked`). Its flags need nightly features: on a
#               stable toolchain this script sets RUSTC_BOOTSTRAP=1 (FUZZ_TOOLCHAIN=nightly uses
#               a nightly toolchain instead, if rustup has one).
#   loop        the deterministic mutation loop of src/bin/fuzz_loop.rs on plain stable cargo,
#               with the same checks (no coverage guidance, no sanitizer).
#
# FUZZ_SANITIZER=address|none (cargo-fuzz only; default address): `none` builds without
# AddressSanitizer, which roughly halves the instrumented build; .ci/run uses it (the code
# under test is safe Rust but for zstd's C, and coverage guidance is what finds the bugs).
#
# New corpus entries go to fuzz/corpus/<target>/ and crash inputs to fuzz/artifacts/<target>/
# (both git-ignored); the committed seeds are in fuzz/seeds/<target>/.
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [SECONDS]  (whole seconds per target, at least 1)" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
targets=(parse_statement wire_messages sealed_datagrams)

engine="${FUZZ_ENGINE:-}"
if [ -z "$engine" ]; then
  if cargo fuzz --version >/dev/null 2>&1; then
    engine=cargo-fuzz
  else
    echo "fuzz: NOTICE: cargo-fuzz is not installed (cargo install cargo-fuzz --locked);" \
      "using the deterministic fallback loop" >&2
    engine=loop
  fi
fi

toolchain=()
if [ "$engine" = cargo-fuzz ]; then
  if [ "${FUZZ_TOOLCHAIN:-}" = nightly ]; then
    toolchain=(+nightly)
  else
    # cargo-fuzz passes -Zsanitizer and friends; stable rustc accepts them with this set.
    export RUSTC_BOOTSTRAP=1
    # cargo caches rustc's answers per flags but not per RUSTC_BOOTSTRAP: a run without it
    # leaves a cached refusal of -Z flags behind. The cache is rebuilt at once.
    rm -f "$here/target/.rustc_info.json"
  fi
fi

# One build of every target up front, so each target's time is spent fuzzing.
if [ "$engine" = cargo-fuzz ]; then
  echo "fuzz: building the targets"
  build_started=$(date +%s)
  # Target by target: `cargo fuzz build` alone also builds src/bin/fuzz_loop.rs, which has no
  # libFuzzer to link against.
  for target in "${targets[@]}"; do
    cargo "${toolchain[@]}" fuzz build --sanitizer "${FUZZ_SANITIZER:-address}" "$target"
  done
  echo "fuzz: built in $(( $(date +%s) - build_started )) s"
fi

failed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  echo "fuzz: $target for ${seconds} s ($engine)"
  started=$(date +%s)
  status=0
  case "$engine" in
    cargo-fuzz)
      cargo "${toolchain[@]}" fuzz run --sanitizer "${FUZZ_SANITIZER:-address}" \
        "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 || status=$?
      ;;
    loop)
      cargo run --quiet --release --no-default-features --bin fuzz_loop -- \
        "$target" "$seconds" "seeds/$target" "corpus/$target" || status=$?
      ;;
    *)
      echo "fuzz: unknown FUZZ_ENGINE $engine (cargo-fuzz or loop)" >&2
      exit 2
      ;;
  esac
  took=$(( $(date +%s) - started ))
  if [ "$status" -ne 0 ]; then
    failed+=("$target")
    summary+=("$target FAILED (exit $status, ${took} s)")
  else
    summary+=("$target ok (${took} s)")
  fi
done

echo "fuzz summary ($engine, ${seconds} s per target):"
printf '  %s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  for target in "${failed[@]}"; do
    echo "fuzz: crash inputs of $target:"
    ls -1 "artifacts/$target" | sed "s|^|  fuzz/artifacts/$target/|"
  done
  exit 1
fi
