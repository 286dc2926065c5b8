# Sourced by the scripts/device_*.sh runners: `step NAME command...` runs a command with its output
# in $out/NAME.log, prints the log's last $step_tail lines and records status and seconds in
# `summary` (printed by the runner at the end).
summary=()
step_tail=${step_tail:-25}
step() {
  local name=$1; shift
  local t0=$SECONDS
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  summary+=("$(printf '%-10s rc=%-3s %4ss' "$name" "$rc" $((SECONDS - t0)))")
  tail -n "$step_tail" "$out/$name.log"
  return $rc
}
