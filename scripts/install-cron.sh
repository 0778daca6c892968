#!/usr/bin/env bash
# Print the crontab block of crontab.example with this checkout's path and your mail
# address filled in; with --install, put it into your crontab (replacing an earlier
# overnight block, keeping every other line).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mailto=${MAILTO:-$(id -un)}
block=$(sed -n '/^# >>> overnight/,/^# <<< overnight/p' crontab.example \
        | sed -e "s|/path/to/overnight|$PWD|g" -e "s|^MAILTO=.*|MAILTO=$mailto|")
if [ "${1:-}" != "--install" ]; then
    echo "$block"
    echo
    echo "# make install-cron INSTALL=1 adds these lines to your crontab (crontab -l shows it)"
    exit 0
fi
current=$(crontab -l 2>/dev/null || true)
{
    echo "$current" | sed '/^# >>> overnight/,/^# <<< overnight/d' | sed '/./,$!d'
    echo "$block"
} | crontab -
echo "installed: the chain starts at 21:30 every day (crontab -l shows it)"
