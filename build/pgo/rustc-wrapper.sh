#!/bin/sh
# Cargo's rustc wrapper for this repository (.cargo/config.toml): gives optimised
# compilations of the tern workspace, dependencies included, the profile of a running
# server (profile-guided optimisation), and passes every other compilation through as it
# is. About 6 % less CPU per login and 4 % per message than the same code built without it
# (docs/benchmarks/README.md, "Profile-guided optimisation").
#
# The profile (tern.profdata, written by build/collect-pgo-profile.sh) is used when
#  - the compilation is optimised (`-C opt-level=3`: the release profile; tests, debug
#    builds and build scripts are not);
#  - it is not for bench/floor or fuzz/, whose own .cargo/config.toml set TERN_PGO=off
#    (cargo finds this wrapper from there too; rustc runs in each dependency's folder,
#    so the wrapper cannot tell the workspaces apart itself);
#  - the compiler's LLVM is the one that wrote the profile (llvm-major), since an older
#    LLVM cannot read a newer profile: with another toolchain the build goes on without it;
#  - TERN_PGO is not `off` (to compare, or to rule it out).
# Cargo does not know what the wrapper adds: after a new profile, `cargo clean --release`
# (build/collect-pgo-profile.sh does it) or the old artifacts stay.
# A profile older than the code is still safe: functions changed since are compiled as
# if they had no profile (the mismatch warnings are turned off), so an old profile costs
# only its benefit. Rerun build/collect-pgo-profile.sh after changing a hot path.
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P)
profile="$here/tern.profdata"
if [ "${TERN_PGO:-on}" != off ] && [ -f "$profile" ]; then
  case " $* " in
    *" opt-level=3 "*)
      want=$(cat "$here/llvm-major" 2>/dev/null)
      have=$("$1" -vV 2>/dev/null | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
      if [ -n "$want" ] && [ "$want" = "$have" ]; then
        exec "$@" "-Cprofile-use=$profile" -Cllvm-args=-no-pgo-warn-mismatch
      fi
      ;;
  esac
fi
exec "$@"
