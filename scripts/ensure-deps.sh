#!/usr/bin/env bash
# Makes sure the system packages the build needs are present: libclang (bindgen, for RocksDB's
# bindings) and a C++ compiler (RocksDB is compiled from source). protoc is vendored by the
# `protoc-bin-vendored` crate, so it is not needed here.
set -euo pipefail

missing=()
has_libclang() {
  [ -n "${LIBCLANG_PATH:-}" ] && return 0
  local f
  # libclang.so* or libclang-<version>.so* as bindgen looks for them; not libclang-cpp.so*, the
  # C++ interface library, which some machines have without libclang and which bindgen cannot use.
  for f in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
    /usr/lib/*/libclang.so* /usr/lib/*/libclang-[0-9]*.so* /usr/lib/libclang.so* /usr/lib/libclang-[0-9]*.so*; do
    [ -e "$f" ] && return 0
  done
  return 1
}
has_libclang || missing+=(libclang-dev)
command -v c++ >/dev/null 2>&1 || missing+=(g++)

[ ${#missing[@]} -eq 0 ] && exit 0

echo "ensure-deps: installing ${missing[*]} (needed to build RocksDB)"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" \
    || { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; }
elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo apt-get update && sudo apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "ensure-deps: please install: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
