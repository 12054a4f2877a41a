#!/bin/sh
# Health check of a sample service: its release folder is complete and names a version.
set -eu
live="$ROLLBACK_DATA_DIR/sample/deploy/$ROLLBACK_SERVICE"
for file in RELEASE VERSION; do
    if [ ! -s "$live/$file" ]; then
        echo "service $ROLLBACK_SERVICE: $live/$file is missing or empty"
        exit 1
    fi
done
echo "service $ROLLBACK_SERVICE: version $(cat "$live/VERSION") from release $(cut -c1-12 "$live/RELEASE")"
