# Sourced by the scripts: one build directory outside the clone, linked with mold.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
# Once only: sourced twice, the flags would differ and every crate would build again.
if command -v mold >/dev/null 2>&1; then
  case " ${RUSTFLAGS:-} " in
    *" -C link-arg=-fuse-ld=mold "*) ;;
    *) export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-fuse-ld=mold" ;;
  esac
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
