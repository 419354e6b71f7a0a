# Sourced by the scripts: one build directory outside the clone, linked with mold.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
if command -v mold >/dev/null 2>&1; then
  export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-fuse-ld=mold"
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
