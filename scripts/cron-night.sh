#!/usr/bin/env bash
# cron's entry point (crontab.example): run tonight's chain, its output appended to
# $RUNS/cron.log. Silent when the night went well, so cron mails only when it did not: then
# it prints the outcome and the log's last lines. Exits with the night's exit code (0 ok,
# 1 a stage failed, 2 preflight failed, 3 no report, 75 another night is running;
# docs/night.md). Settings come from local.mk.
#
# It runs the same driver as `make overnight`, with the command the Makefile prints
# (`make night-command`): make itself can only exit 0 or 2, and cron needs the real code.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 3
runs=${RUNS:-runs}
log=$runs/cron.log
mkdir -p "$runs"

echo "==== $(date '+%F %T') cron: the night driver (make overnight)" >>"$log"
if make --no-print-directory ready >>"$log" 2>&1 \
        && command=$(make --no-print-directory -s night-command 2>>"$log"); then
    echo "\$ $command" >>"$log"
    eval "$command" >>"$log" 2>&1
    code=$?
else
    echo "make could not prepare the night (see above)" >>"$log"
    code=3
fi
echo "==== $(date '+%F %T') cron: exit code $code" >>"$log"

if [ "$code" -ne 0 ]; then
    echo "overnight in $PWD: exit code $code; the last lines of $log:"
    tail -n 40 "$log"
fi
exit "$code"
