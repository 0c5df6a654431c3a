#!/bin/sh
# recipe.sh OUT: copy the workspace's manifests (Cargo.toml, Cargo.lock,
# .cargo/) into OUT with stub sources, so the Dockerfile can build every
# dependency in a layer that stays cached until a manifest changes (what
# cargo-chef does, without needing cargo-chef). Run from the workspace root.
set -eu
out=${1:?usage: recipe.sh OUT}
mkdir -p "$out"
cp Cargo.toml Cargo.lock "$out/"
if [ -d .cargo ]; then cp -R .cargo "$out/"; fi
find . \( -name target -o -name 'target-*' -o -name .git \) -prune -o -name Cargo.toml -print |
while read -r manifest; do
  dir=${manifest%/Cargo.toml}
  [ "$dir" = . ] && continue
  mkdir -p "$out/$dir"
  cp "$manifest" "$out/$dir/"
  if [ -f "$dir/build.rs" ]; then cp "$dir/build.rs" "$out/$dir/"; fi
  if [ -f "$dir/src/lib.rs" ]; then
    mkdir -p "$out/$dir/src"
    : > "$out/$dir/src/lib.rs"
  fi
  # Every other target cargo may look for: a stub `main`.
  for target in "$dir"/src/main.rs "$dir"/src/bin/*.rs "$dir"/tests/*.rs "$dir"/benches/*.rs "$dir"/examples/*.rs; do
    if [ -f "$target" ]; then
      mkdir -p "$out/${target%/*}"
      echo 'fn main() {}' > "$out/$target"
    fi
  done
done
