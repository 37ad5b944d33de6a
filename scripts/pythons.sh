#!/usr/bin/env bash
# The CPython interpreters caboose supports (3.11 and newer) found on this machine: pyenv's
# versions and python3.X on PATH. Prints "VERSION PATH" per line, one per minor version,
# oldest first. With a VERSION argument (3.13), prints only that interpreter's path, and
# fails naming it when there is none: CI must not pass by testing fewer Pythons.
set -euo pipefail

candidates() {
    local root
    if root="$(pyenv root 2>/dev/null)"; then
        ls -d "$root"/versions/3.*/bin/python3 2>/dev/null || true
    fi
    for minor in 11 12 13 14; do
        command -v "python3.$minor" 2>/dev/null || true
    done
}

declare -A found=()
while read -r python; do
    [ -x "$python" ] || continue
    version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || continue
    case "$version" in
        3.1[1-9]) [ -n "${found[$version]:-}" ] || found[$version]="$python" ;;
    esac
done < <(candidates)

if [ $# -gt 0 ]; then
    if [ -z "${found[$1]:-}" ]; then
        echo "pythons.sh: no CPython $1 found (pyenv install $1, or put python$1 on PATH)" >&2
        exit 1
    fi
    echo "${found[$1]}"
    exit 0
fi
for version in $(printf '%s\n' "${!found[@]}" | sort -V); do
    echo "$version ${found[$version]}"
done
