#!/bin/sh
# rotate-events.sh FILE MAX_BYTES KEEP: when FILE is MAX_BYTES or more, move its content to
# FILE.1.gz (older ones shift up to FILE.KEEP.gz, the oldest is dropped).
#
# Copy-then-truncate, like logrotate's copytruncate: the runtime holds FILE open in append
# mode (O_APPEND), so after the truncation its next line lands at the new end of the file and
# no restart is needed. Lines written between the copy and the truncation are lost; at ~30
# lines a second that is at most a few lines per rotation. Plain sh and coreutils, so it runs
# on any Pi without logrotate or root.
set -eu
file=$1
max=${2:-10485760}
keep=${3:-5}

[ -f "$file" ] || exit 0
size=$(wc -c < "$file")
[ "$size" -ge "$max" ] || exit 0

rm -f "$file.$keep.gz"
i=$keep
while [ "$i" -gt 1 ]; do
    prev=$((i - 1))
    if [ -f "$file.$prev.gz" ]; then mv -f "$file.$prev.gz" "$file.$i.gz"; fi
    i=$prev
done
cp -p "$file" "$file.1"
: > "$file"
gzip -f "$file.1"
echo "rotated $file ($size bytes) to $file.1.gz"
