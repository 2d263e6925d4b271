#!/bin/sh
# Build this example's static binary into its Docker build context: ./build.sh [OUTDIR]
exec sh "$(dirname "$0")/../build-static.sh" "$(dirname "$0")" "$@"
