#!/usr/bin/env bash
# cron's entry point (crontab.example): run tonight's chain with `make overnight`, its
# output appended to $RUNS/cron.log. Silent when the night went well, so cron mails only
# when it did not: then it prints the outcome and the log's last lines. Exits with the
# night's exit code (0 ok, 1 a stage failed, 2 preflight failed, 3 no report, 75 another
# night is running; README "Running every night"). Settings come from local.mk.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 3
runs=${RUNS:-runs}
log=$runs/cron.log
mkdir -p "$runs"
exit_file=$(mktemp)
trap 'rm -f "$exit_file"' EXIT

{ echo "==== $(date '+%F %T') cron: make overnight"; } >>"$log"
make --no-print-directory overnight NIGHT_EXIT_FILE="$exit_file" >>"$log" 2>&1
make_code=$?
code=$(cat "$exit_file")
# make stopped before the night's driver wrote its code (a Makefile or setup error)
[ -n "$code" ] || code=$(( make_code == 0 ? 0 : 3 ))
echo "==== $(date '+%F %T') cron: exit code $code" >>"$log"

if [ "$code" -ne 0 ]; then
    echo "overnight in $PWD: exit code $code; the last lines of $log:"
    tail -n 40 "$log"
fi
exit "$code"
