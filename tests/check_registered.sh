#!/bin/sh
# Fails (at configure time) when a tests/<dir>/test_*.c file is not named in
# its folder's meson.build, so that no test silently stops running.
top="$1"
status=0
for f in "$top"/*/test_*.c; do
    [ -e "$f" ] || continue
    dir=$(dirname "$f")
    base=$(basename "$f")
    if ! grep -q "$base" "$dir/meson.build" 2>/dev/null; then
        echo "tests: $dir/$base is not registered in $dir/meson.build" >&2
        status=1
    fi
done
exit $status
