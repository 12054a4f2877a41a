#!/bin/sh
# Put one service of the sample deployment back on the release before the batch.
#
# The release is the service's folder (SOURCE_DIR, from services.yaml) as it was at
# ROLLBACK_TO_REF. It is unpacked next to the live folder and swapped in with two renames,
# so a failure half way leaves the running release untouched.
set -eu

deploy_root="$ROLLBACK_DATA_DIR/sample/deploy"
live="$deploy_root/$ROLLBACK_SERVICE"

if [ -z "$ROLLBACK_TO_REF" ]; then
    echo "batch $ROLLBACK_BATCH starts at the first commit: there is no earlier release" >&2
    exit 1
fi
if [ ! -d "$live" ]; then
    echo "service $ROLLBACK_SERVICE is not deployed at $live" >&2
    exit 1
fi

echo "service $ROLLBACK_SERVICE: release $(cat "$live/RELEASE") -> $ROLLBACK_TO_REF"
if [ "$ROLLBACK_DRY_RUN" = "1" ]; then
    echo "dry run: would unpack $SOURCE_DIR at $ROLLBACK_TO_REF into $live"
    exit 0
fi

staging=$(mktemp -d "$deploy_root/.$ROLLBACK_SERVICE.XXXXXX")
trap 'rm -rf "$staging"' EXIT
git -C "$ROLLBACK_REPO" archive --format=tar "$ROLLBACK_TO_REF" -- "$SOURCE_DIR" | tar -x -C "$staging"
printf '%s\n' "$ROLLBACK_TO_REF" > "$staging/$SOURCE_DIR/RELEASE"

mv "$live" "$staging/previous"
mv "$staging/$SOURCE_DIR" "$live"
echo "service $ROLLBACK_SERVICE now runs version $(cat "$live/VERSION") from release $ROLLBACK_TO_REF"
